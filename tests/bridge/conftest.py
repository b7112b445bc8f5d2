"""The bridge on the test cluster: `datatx-bridge` as a real process, running as the chart's
bridge ServiceAccount (RBAC enforced), on free loopback ports, with three static-token
users (alice, bob, and carol of the admin group) and a reva JWT secret. Tests talk to it
with real gRPC and HTTP clients and look at the cluster with kubectl."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import yaml
from cs3.tx.v1beta1 import tx_api_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from datatx.v1 import datatx_pb2 as pb
from datatx.v1 import datatx_pb2_grpc as pb_grpc
from datatx_operator import api
from localcluster.launcher import Cluster
from localcluster.tools import tool_path
from tests.servers.datatx import CHART, RELEASE, Namespace

ADMIN_GROUP = "datatx-admins"
USERS = {"alice": ["physics"], "bob": ["chemistry"], "carol": [ADMIN_GROUP]}
STARTUP_SECONDS = 60


@dataclass
class Bridge:
    namespace: Namespace
    env: dict[str, str]
    log_path: Path
    tokens: dict[str, str]
    jwt_secret: str
    credentials: grpc.ChannelCredentials | None = None
    process: subprocess.Popen[bytes] | None = None
    addresses: dict[str, str] = field(default_factory=dict)
    _channels: list[grpc.Channel] = field(default_factory=list)

    # -- life cycle ------------------------------------------------------------------

    def start(self, *, ready: bool = True) -> None:
        """Start the process; wait until it listens and (`ready`) reports SERVING."""
        addresses_file = Path(self.env["DATATX_BRIDGE_ADDRESSES_FILE"])
        addresses_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "datatx-bridge")],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bridge exited:\n{self.logs()[-3000:]}")
            if addresses_file.exists():
                self.addresses = json.loads(addresses_file.read_text())
                if not ready or self.serving():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"bridge not serving:\n{self.logs()[-3000:]}")

    def health(self) -> Any:
        return health_pb2_grpc.HealthStub(self.channel())

    def serving(self) -> bool:
        try:
            answer = self.health().Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def terminate(self) -> None:
        """SIGTERM, as Kubernetes stops a pod."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        if self.process is not None and self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- clients ---------------------------------------------------------------------

    def channel(self) -> grpc.Channel:
        address = self.addresses["grpc"]
        if self.credentials is not None:
            channel = grpc.secure_channel(address, self.credentials)
        else:
            channel = grpc.insecure_channel(address)
        self._channels.append(channel)
        return channel

    def seed(self) -> pb_grpc.DataTxStub:
        return pb_grpc.DataTxStub(self.channel())

    def cs3(self) -> Any:
        return tx_api_pb2_grpc.TxAPIStub(self.channel())

    def auth(self, user: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.tokens[user]}")]

    def reva_token(
        self,
        user: str,
        *,
        idp: str = "https://cernbox.example.org",
        groups: tuple[str, ...] = (),
        secret: str | None = None,
        expires_in: int | None = 3600,
        algorithm: str = "HS256",
        **extra: Any,
    ) -> str:
        """An x-access-token as reva mints it (HS256 with the shared secret); `expires_in`
        None: without the `exp` claim."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "user": {
                "id": {"idp": idp, "opaque_id": user, "type": 1},
                "username": user,
                "groups": list(groups),
            },
            "scope": {},
            "aud": "reva",
            "iss": idp,
            "iat": now,
            **extra,
        }
        if expires_in is not None:
            payload["exp"] = now + expires_in
        key = None if algorithm == "none" else (secret or self.jwt_secret)
        return jwt.encode(payload, key, algorithm=algorithm)

    def http(self, path: str) -> str:
        return f"http://{self.addresses['http']}{path}"

    def metrics(self) -> str:
        import urllib.request

        url = f"http://{self.addresses['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    # -- the cluster side ------------------------------------------------------------

    def kubectl(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.namespace.cluster.kubectl(*args, "-n", self.namespace.name, **kwargs)

    def transfers(self) -> list[dict[str, Any]]:
        out = self.kubectl("get", f"{api.PLURAL}.{api.GROUP}", "-o", "json").stdout
        return list(json.loads(out)["items"])

    def transfer(self, name: str) -> dict[str, Any]:
        return self.namespace.get(name)

    def secret_data(self, name: str) -> dict[str, str] | None:
        result = self.kubectl("get", "secret", name, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        data = json.loads(result.stdout).get("data") or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def set_status(self, name: str, status: dict[str, Any]) -> None:
        """Play the operator: merge `status` into the CR's status subresource."""
        self.kubectl(
            "patch",
            f"{api.PLURAL}.{api.GROUP}",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )

    def open_invite(self, name: str, *, deadline_in: float = 3600) -> str:
        """Play the operator sending an invite: store the token's hash; return the token."""
        token = secrets.token_urlsafe(32)
        deadline = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + deadline_in))
        self.set_status(
            name,
            {
                "phase": "WaitingForInviteAcceptance",
                "invite": {
                    "tokenSha256": hashlib.sha256(token.encode()).hexdigest(),
                    "deadline": deadline,
                },
            },
        )
        return token


def eventually(check: Callable[[], Any], timeout: float = 15, interval: float = 0.05) -> Any:
    """Poll until `check()` returns a truthy value (the bridge's cache follows a watch)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")


class Launcher:
    """Starts bridges with shared users and secrets; stops them all at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Bridge] = []
        self.tokens = {user: secrets.token_urlsafe(24) for user in USERS}
        self.tokens_file = directory / "tokens.yaml"
        users = {
            self.tokens[user]: {"user": user, "groups": groups} for user, groups in USERS.items()
        }
        self.tokens_file.write_text(yaml.safe_dump(users))
        self.tokens_file.chmod(0o600)
        self.jwt_secret = secrets.token_urlsafe(32)
        self.jwt_file = directory / "jwt-secret"
        self.jwt_file.write_text(self.jwt_secret)
        self.jwt_file.chmod(0o600)

    def __call__(
        self,
        namespace: Namespace,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        ready: bool = True,
        **settings: str,
    ) -> Bridge:
        """A started bridge; `settings` override `DATATX_BRIDGE_*` (lowercase names);
        `credentials`: how clients reach a TLS bridge; `ready`: wait until SERVING."""
        index = len(self.started)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "DATATX_BRIDGE_NAMESPACE": namespace.name,
            "DATATX_BRIDGE_KUBECONFIG": str(namespace.kubeconfig_for("bridge", self.directory)),
            "DATATX_BRIDGE_LISTEN": "127.0.0.1:0",
            "DATATX_BRIDGE_HTTP_LISTEN": "127.0.0.1:0",
            "DATATX_BRIDGE_METRICS_LISTEN": "127.0.0.1:0",
            "DATATX_BRIDGE_ADDRESSES_FILE": str(self.directory / f"bridge-{index}.json"),
            "DATATX_BRIDGE_STATIC_TOKENS_FILE": str(self.tokens_file),
            "DATATX_BRIDGE_JWT_SECRET_FILE": str(self.jwt_file),
            "DATATX_BRIDGE_ADMIN_GROUP": ADMIN_GROUP,
            "DATATX_BRIDGE_CANCEL_TIMEOUT_SECONDS": "5",
            "DATATX_BRIDGE_SHUTDOWN_GRACE_SECONDS": "10",
            **{f"DATATX_BRIDGE_{key.upper()}": value for key, value in settings.items()},
        }
        log_path = self.directory / f"bridge-{index}.log"
        bridge = Bridge(namespace, env, log_path, self.tokens, self.jwt_secret, credentials)
        self.started.append(bridge)
        bridge.start(ready=ready)
        return bridge

    def stop_all(self) -> None:
        for bridge in self.started:
            bridge.stop()


@pytest.fixture
def start_bridge(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture
def bridge(start_bridge: Launcher, datatx_namespace: Namespace) -> Bridge:
    """A bridge of its own for one test, in a fresh namespace."""
    return start_bridge(datatx_namespace)


@pytest.fixture(scope="module")
def shared_bridge(
    cluster: Cluster, datatx_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bridge]:
    """One bridge for a whole module, in a namespace of its own (tests must not assume
    they are alone in it)."""
    name = f"br-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    rendered = subprocess.run(
        [
            str(tool_path("helm")),
            "template",
            RELEASE,
            str(CHART),
            "--namespace",
            name,
            "--set",
            "operator.enabled=false",
            "--set",
            "bridge.enabled=false",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cluster.kubectl("apply", "-n", name, "-f", "-", input=rendered)
    launcher = Launcher(tmp_path_factory.mktemp("bridge"))
    try:
        yield launcher(Namespace(cluster, name))
    finally:
        launcher.stop_all()
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# -- requests ------------------------------------------------------------------------


def webdav_request(**fields: Any) -> pb.DoTransferRequest:
    """A valid DoTransfer between two WebDAV remotes, with a credential (or `fields`)."""
    request = pb.DoTransferRequest(
        src="src:data/in",
        dest="dst:data/out",
        remotes=[
            pb.Remote(
                name="src",
                type="webdav",
                options={"url": "https://source.example.org/dav"},
                secret_options={"bearer_token": "source-token-" + secrets.token_hex(8)},
            ),
            pb.Remote(name="dst", type="webdav", options={"url": "https://dest.example.org/dav"}),
        ],
        credential="dest-token-" + secrets.token_hex(8),
    )
    for name, value in fields.items():
        if isinstance(value, list):
            request.ClearField(name)  # type: ignore[arg-type]
            getattr(request, name).extend(value)
        elif hasattr(value, "CopyFrom"):
            getattr(request, name).CopyFrom(value)
        else:
            setattr(request, name, value)
    return request


def invite_request(**fields: Any) -> pb.DoTransferRequest:
    """A valid DoTransfer without credential: the invitee is asked."""
    request = webdav_request(**fields)
    request.ClearField("credential")
    if not request.HasField("invitee"):
        request.invitee.CopyFrom(pb.Invitee(name="Dora", email="dora@dest.example.org"))
    return request


@contextlib.contextmanager
def no_new_transfers(bridge: Bridge) -> Iterator[None]:
    """Asserts that the block created no DataTransfer (and no Secret)."""
    before_transfers = {item["metadata"]["name"] for item in bridge.transfers()}
    before_secrets = set(bridge.kubectl("get", "secrets", "-o", "name").stdout.split())
    yield
    assert {item["metadata"]["name"] for item in bridge.transfers()} == before_transfers
    assert set(bridge.kubectl("get", "secrets", "-o", "name").stdout.split()) == before_secrets
