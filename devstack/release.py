"""The datatx chart installed on a local cluster, as `make dev-up` and the tests do it.

Pods share the host's network there, so each release binds its own free ports on
127.0.0.1, clients reach the bridge at 127.0.0.1:<grpc port>, and the bridge runs one
replica (see `LOCAL_VALUES`). Logins are static tokens in a Secret the chart refers to.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack import kube
from localcluster.launcher import Cluster

RELEASE = "datatx"
TOKENS_SECRET = "datatx-static-tokens"  # noqa: S105 (the name of a Secret)
ADMIN_GROUP = "datatx-admins"
PORT_VALUES = (
    ("bridge", "grpcPort"),
    ("bridge", "httpPort"),
    ("bridge", "metricsPort"),
    ("operator", "healthPort"),
    ("operator", "metricsPort"),
)


def free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now (held together while choosing)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def local_values(ports: dict[tuple[str, str], int]) -> dict[str, Any]:
    """What the local cluster needs beyond the chart's defaults."""
    values: dict[str, Any] = {
        "bridge": {
            "listenHost": "127.0.0.1",
            # Until the bridge's listeners share ports (SO_REUSEPORT), replicas on one host
            # would collide, and an update must stop the old pod before starting the new.
            "replicas": 1,
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            },
            "auth": {"staticTokensSecret": {"name": TOKENS_SECRET, "key": "tokens.yaml"}},
        },
        "operator": {},
    }
    for (component, key), port in ports.items():
        values[component][key] = port
    http = ports[("bridge", "httpPort")]
    values["bridge"]["publicBaseUrl"] = f"http://127.0.0.1:{http}"
    return values


@dataclass
class User:
    name: str
    groups: tuple[str, ...] = ()


ADMIN = User("admin", (ADMIN_GROUP,))


@dataclass
class Release:
    """One installation of the chart in one namespace."""

    cluster: Cluster
    namespace: str
    name: str = RELEASE
    ports: dict[tuple[str, str], int] = field(default_factory=dict)

    def installed(self) -> bool:
        listed = kube.helm(self.cluster, "list", "-n", self.namespace, "-q", timeout=60)
        return self.name in listed.split()

    def values(self) -> dict[str, Any]:
        """The values given at install or upgrade (empty when not installed)."""
        if not self.installed():
            return {}
        out = kube.helm(
            self.cluster, "get", "values", self.name, "-n", self.namespace, "-o", "json"
        )
        return dict(json.loads(out) or {})

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports[('bridge', 'grpcPort')]}"

    def put_tokens(self, tokens: dict[str, User]) -> None:
        """The bridge's static tokens Secret: token -> user (read by the bridge at start)."""
        content = {
            token: {"user": user.name, "groups": list(user.groups)}
            for token, user in tokens.items()
        }
        kube.apply(
            self.cluster,
            kube.secret(self.namespace, TOKENS_SECRET, {"tokens.yaml": yaml.safe_dump(content)}),
        )

    def install(
        self, values_file: Path, overrides: dict[str, Any] | None = None, timeout: int = 300
    ) -> float:
        """`helm upgrade --install --wait` with the local values (ports kept across upgrades);
        return the seconds until every pod was ready."""
        kept = self.values()
        if all(key in kept.get(component, {}) for component, key in PORT_VALUES):
            self.ports = {(c, k): int(kept[c][k]) for c, k in PORT_VALUES}
        else:
            self.ports = dict(zip(PORT_VALUES, free_ports(len(PORT_VALUES)), strict=True))
        values = _merge(local_values(self.ports), overrides or {})
        values_file.write_text(yaml.safe_dump(values, sort_keys=False))
        begin = time.monotonic()
        kube.helm(
            self.cluster,
            "upgrade",
            "--install",
            self.name,
            str(kube.CHART),
            "--namespace",
            self.namespace,
            "--values",
            str(values_file),
            "--wait",
            f"--timeout={timeout}s",
            timeout=timeout + 30,
        )
        return time.monotonic() - begin

    def uninstall(self) -> None:
        kube.helm(self.cluster, "uninstall", self.name, "-n", self.namespace, "--wait", timeout=180)


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_client_files(directory: Path, address: str, token: str) -> None:
    """`bridge-address` (host:port) and `bridge-token` (mode 0600), read by the CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bridge-address").write_text(address + "\n")
    token_file = directory / "bridge-token"
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text(token + "\n")
