"""datatx on the test cluster: the CRD, a namespace with the chart's ServiceAccounts and
RBAC, and the operator running as its own ServiceAccount (a process holding only that
account's token, so RBAC is enforced exactly as in a pod)."""

from __future__ import annotations

import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from datatx_operator import api
from localcluster.launcher import Cluster
from localcluster.tools import tool_path
from tests.servers.ports import free_port

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "datatx"
CRD = REPO / "deploy" / "crds" / "datatransfers.datatx.io.yaml"
RELEASE = "datatx"
_counter = itertools.count()


@dataclass
class Namespace:
    """A namespace prepared like `helm install` would: ServiceAccounts and Roles."""

    cluster: Cluster
    name: str

    @functools.cached_property
    def api(self) -> client.ApiClient:
        """One API client for the test's writes: much faster than a kubectl run per object."""
        return self.cluster.api_client()

    def service_account(self, component: str) -> str:
        return f"{RELEASE}-{component}"

    def kubeconfig_for(self, component: str, directory: Path) -> Path:
        """A kubeconfig holding only the component's ServiceAccount token."""
        token = self.cluster.kubectl(
            "create", "token", self.service_account(component), "-n", self.name, "--duration=6h"
        ).stdout.strip()
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": admin["clusters"],
            "users": [{"name": component, "user": {"token": token}}],
            "contexts": [
                {
                    "name": component,
                    "context": {
                        "cluster": admin["clusters"][0]["name"],
                        "user": component,
                        "namespace": self.name,
                    },
                }
            ],
            "current-context": component,
        }
        path = directory / f"{self.name}-{component}.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def get(self, name: str) -> dict[str, Any]:
        out = self.cluster.kubectl(
            "get", f"{api.PLURAL}.{api.GROUP}", name, "-n", self.name, "-o", "json"
        )
        return dict(yaml.safe_load(out.stdout))

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        """A merge patch of the transfer's spec, as an admin (or the bridge) would make it."""
        self.cluster.kubectl(
            "patch",
            f"{api.PLURAL}.{api.GROUP}",
            name,
            "-n",
            self.name,
            "--type=merge",
            "-p",
            json.dumps({"spec": spec}),
        )

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """Every object of `kind` in the namespace, from one list call (one snapshot)."""
        out = self.cluster.kubectl("get", kind, "-n", self.name, "-o", "json")
        return list(json.loads(out.stdout)["items"])

    def wait_jobs_complete(self, *, check: bool = True) -> None:
        """Wait until every Job is Complete: a run ends Finished on its mover's report, and
        the pod's exit reaches its Job just after. `check` False: having no Job is fine."""
        self.cluster.kubectl(
            "wait", "-n", self.name, "--for=condition=Complete", "jobs", "--all",
            "--timeout=120s", check=check,
        )  # fmt: skip

    def exists(self, kind: str, name: str) -> bool:
        result = self.cluster.kubectl("get", kind, name, "-n", self.name, check=False)
        return result.returncode == 0

    def wait_for(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        """Poll the transfer until `predicate(body)` holds; fail with its last state."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            result = self.cluster.kubectl(
                "get", f"{api.PLURAL}.{api.GROUP}", name, "-n", self.name, "-o", "json", check=False
            )
            if result.returncode == 0:
                body = yaml.safe_load(result.stdout)
                if predicate(body):
                    return body
            time.sleep(0.5)
        raise AssertionError(f"{name} did not reach the expected state; last: {body.get('status')}")

    def wait_phase(self, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
        return self.wait_for(
            name, lambda body: (body.get("status") or {}).get("phase") in phases, timeout
        )

    def events(self, name: str) -> list[dict[str, Any]]:
        out = self.cluster.kubectl(
            "get",
            "events",
            "-n",
            self.name,
            "--field-selector",
            f"involvedObject.name={name}",
            "-o",
            "json",
        )
        return list(yaml.safe_load(out.stdout)["items"])


@dataclass
class OperatorProcess:
    """`datatx-operator` serving one namespace, as the operator ServiceAccount."""

    namespace: Namespace
    env: dict[str, str]
    log_path: Path
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "datatx-operator")],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.env['DATATX_HEALTH_PORT']}/healthz"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"operator not healthy:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a node dies."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            return str(response.read().decode())

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def datatx_crd(cluster: Cluster) -> None:
    """The CRD applied and Established. Polled rather than `kubectl wait`, which can fail
    at once while a just-created CRD has no conditions yet on a loaded machine."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRD))
    established = '{.status.conditions[?(@.type=="Established")].status}'
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        shown = cluster.kubectl(
            "get", f"crd/{api.PLURAL}.{api.GROUP}", "-o", f"jsonpath={established}", check=False
        )
        if shown.stdout.strip() == "True":
            return
        time.sleep(0.2)
    raise AssertionError("the DataTransfer CRD did not become Established within 120 s")


@pytest.fixture
def datatx_namespace(cluster: Cluster, datatx_crd: None) -> Iterator[Namespace]:
    """A fresh namespace with the chart's ServiceAccounts and RBAC (no workloads)."""
    name = f"dt-{next(_counter)}-{uuid.uuid4().hex[:6]}"
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
    yield Namespace(cluster, name)
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def run_operator(tmp_path: Path) -> Iterator[OperatorFactory]:
    """Start an operator for a namespace with settings overrides (`DATATX_*` names)."""
    started: list[OperatorProcess] = []

    def start(namespace: Namespace, **settings: str) -> OperatorProcess:
        kubeconfig = namespace.kubeconfig_for("operator", tmp_path)
        metrics_port, health_port = free_port(), free_port()
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "KUBECONFIG": str(kubeconfig),
            "DATATX_NAMESPACES": f'["{namespace.name}"]',
            "DATATX_MOVER_SERVICE_ACCOUNT": namespace.service_account("mover"),
            "DATATX_METRICS_PORT": str(metrics_port),
            "DATATX_HEALTH_PORT": str(health_port),
            "DATATX_SWEEP_INTERVAL_SECONDS": "1",
            **settings,
        }
        operator = OperatorProcess(
            namespace, env, tmp_path / f"operator-{namespace.name}.log", metrics_port
        )
        operator.start()
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()
