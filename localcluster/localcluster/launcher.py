"""Start a whole cluster in one work dir, wait until it can run pods, and stop it again.

Processes run detached in their own sessions and are recorded in `state.json`, so a later
`localcluster down` (another process) can stop what `localcluster up` started.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from localcluster import components, kubeconfig, pki, processes, tools
from localcluster.components import Layout, Ports
from localcluster.processes import ProcessRecord

NODE_NAME = "localcluster"
PORT_ATTEMPTS = 3
PORT_TAKEN = "address already in use"
STOP_ORDER = ("nodeagent", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")


class ClusterError(RuntimeError):
    """The cluster did not come up, or is not in the state an operation needs."""


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl run; its message carries kubectl's own error text."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {self.stderr.strip()}"


class Cluster:
    """One local cluster: etcd, apiserver, controller-manager, scheduler and the node agent."""

    def __init__(
        self,
        workdir: Path,
        *,
        images: Path | None = None,
        node_name: str = NODE_NAME,
        tie_to_parent: bool = False,
    ) -> None:
        self.workdir = workdir.resolve()
        self.layout = Layout(self.workdir)
        self.images = images
        self.node_name = node_name
        self.tie_to_parent = tie_to_parent
        self.ports: Ports | None = None
        self.records: list[ProcessRecord] = []

    # -- what tests and tools use ------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.layout.admin_kubeconfig

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._ports().apiserver}"

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        command = [str(tools.tool_path("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            command, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    def wait_for_namespace_defaults(self, namespace: str) -> None:
        """Wait for the default ServiceAccount and CA bundle that controllers add to a new
        namespace (pods need both). One wait each: given several names of which none exists
        yet, `kubectl wait --for=create` fails at once with NotFound instead of waiting."""
        for made_by_controllers in ("sa/default", "cm/kube-root-ca.crt"):
            self.kubectl(
                "wait", "--for=create", "--timeout=120s", "-n", namespace, made_by_controllers
            )

    def api_client(self) -> k8s_client.ApiClient:
        api: k8s_client.ApiClient = k8s_config.new_client_from_config(
            config_file=str(self.kubeconfig)
        )
        return api

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 180) -> float:
        """Start every component and wait until a pod can run; return the seconds it took."""
        begin = time.monotonic()
        if shutil.which("bwrap") is None:
            raise ClusterError("bubblewrap (bwrap) is missing: run `make system-deps`")
        self._refuse_if_running()
        for attempt in range(PORT_ATTEMPTS):
            self._clean()
            self.ports = Ports.pick()
            try:
                self._launch(begin + timeout)
                return time.monotonic() - begin
            except ClusterError as error:
                self.stop()
                # A free port can be taken before its server binds it: pick others, retry.
                if PORT_TAKEN not in str(error).lower() or attempt + 1 == PORT_ATTEMPTS:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the node agent first (it stops the pods), then the control plane; verify."""
        if not self.records and self.layout.state.exists():
            self._load_state()
        by_name = {record.name: record for record in self.records}
        for name in STOP_ORDER:
            if name in by_name:
                processes.stop([by_name[name]], timeout=30 if name == "nodeagent" else 10)
        pod_records = self._pod_records()
        if pod_records:
            processes.stop(pod_records, timeout=5)
        leftovers = processes.group_members(r.pid for r in [*self.records, *pod_records])
        if leftovers:
            raise ClusterError(f"processes left behind: {leftovers}")
        self.records = []
        self.layout.state.unlink(missing_ok=True)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @classmethod
    def attach(cls, workdir: Path) -> Cluster:
        """The cluster recorded in `workdir` by an earlier `start`, possibly by another process."""
        cluster = cls(workdir)
        if not cluster.layout.state.exists():
            raise ClusterError(f"no cluster state in {cluster.workdir}")
        cluster._load_state()
        return cluster

    def status(self) -> dict[str, tuple[ProcessRecord, bool, int]]:
        """Per component: its record, whether it runs, and its memory (RSS bytes, children too)."""
        return {
            record.name: (record, processes.alive(record), _group_rss(record.pid))
            for record in self.records
        }

    # -- internals -----------------------------------------------------------------------

    def _ports(self) -> Ports:
        if self.ports is None:
            raise ClusterError("the cluster is not started")
        return self.ports

    def _clean(self) -> None:
        """Remove what an earlier run left in the work dir (only the files it owns)."""
        for path in self.layout.owned_paths():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.records = []

    def _refuse_if_running(self) -> None:
        if not self.layout.state.exists():
            return
        previous = Cluster.attach(self.workdir)
        running = [record.name for record in previous.records if processes.alive(record)]
        if running:
            raise ClusterError(
                f"a cluster already runs in {self.workdir} ({', '.join(running)}); stop it first"
            )
        previous.stop()  # a crashed run: sweep whatever of it is left

    def _load_state(self) -> None:
        state = json.loads(self.layout.state.read_text())
        self.node_name = state["node"]
        self.ports = Ports(**state["ports"])
        self.records = [ProcessRecord(**record) for record in state["processes"]]

    def _save_state(self) -> None:
        state = {
            "node": self.node_name,
            "ports": self._ports().as_dict(),
            "processes": [json.loads(record.to_json()) for record in self.records],
        }
        self.layout.state.write_text(json.dumps(state, indent=2))

    def _spawn(self, name: str, argv: list[str]) -> None:
        # Tied to this process, the control plane just dies with it (its state is throwaway);
        # the node agent gets SIGTERM, so that it ends the pods' processes first.
        signum = signal.SIGTERM if name == "nodeagent" else signal.SIGKILL
        record = processes.spawn(
            name,
            argv,
            self.layout.logs / f"{name}.log",
            death_signal=signum if self.tie_to_parent else None,
        )
        self.records.append(record)
        self._save_state()

    def _launch(self, deadline: float) -> None:
        ports, layout = self._ports(), self.layout
        certs = pki.create(layout.pki, self.node_name)
        layout.kubeconfigs.mkdir(parents=True, exist_ok=True)
        server = self.server
        kubeconfig.write(
            self.kubeconfig,
            server=server,
            ca=certs.ca.cert,
            client=certs.admin,
            user="admin",
            embed=True,
        )
        kcm_config = kubeconfig.write(
            layout.kubeconfigs / "controller-manager",
            server=server,
            ca=certs.ca.cert,
            client=certs.controller_manager,
            user="controller-manager",
            embed=False,
        )
        scheduler_config = kubeconfig.write(
            layout.kubeconfigs / "scheduler",
            server=server,
            ca=certs.ca.cert,
            client=certs.scheduler,
            user="scheduler",
            embed=False,
        )
        self._api = _ApiProbe(server, certs)

        self._spawn("etcd", components.etcd(layout, ports))
        self._wait("etcd", deadline, lambda: _etcd_healthy(ports.etcd_client))
        self._spawn("kube-apiserver", components.apiserver(layout, ports, certs))
        self._wait("kube-apiserver", deadline, lambda: self._api.ok("/readyz"))
        self._spawn(
            "kube-controller-manager",
            components.controller_manager(layout, ports, certs, kcm_config),
        )
        self._spawn("kube-scheduler", components.scheduler(layout, ports, scheduler_config))
        self._spawn(
            "nodeagent",
            components.nodeagent(layout, ports, certs, self.node_name, self.images),
        )
        self._wait("kube-controller-manager", deadline, lambda: _healthz(ports.controller_manager))
        self._wait("kube-scheduler", deadline, lambda: _healthz(ports.scheduler))
        self._wait("nodeagent", deadline, self._node_ready)
        default_sa = "/api/v1/namespaces/default/serviceaccounts/default"
        self._wait("kube-controller-manager", deadline, lambda: self._api.ok(default_sa))
        root_ca = "/api/v1/namespaces/default/configmaps/kube-root-ca.crt"
        self._wait("kube-controller-manager", deadline, lambda: self._api.ok(root_ca))

    def _node_ready(self) -> bool:
        node = self._api.get(f"/api/v1/nodes/{self.node_name}")
        if node is None:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        blocking = [
            taint
            for taint in node.get("spec", {}).get("taints", [])
            if taint["effect"] in ("NoSchedule", "NoExecute")
        ]
        return ready and not blocking

    def _wait(self, name: str, deadline: float, check: Callable[[], bool]) -> None:
        """Poll `check` until true; fail early, with its log, when a process died."""
        while True:
            dead = [record for record in self.records if not processes.alive(record)]
            if dead:
                raise ClusterError(_died_message(dead[0], self.layout))
            if check():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out waiting for {name}\n{_log_tail(self.layout, name)}")
            time.sleep(0.2)

    def _pod_records(self) -> list[ProcessRecord]:
        """Pod processes the node agent recorded and may not have stopped (if it was killed)."""
        directory = self.layout.nodeagent / "processes"
        if not directory.is_dir():
            return []
        return [ProcessRecord.from_json(path.read_text()) for path in directory.glob("*.json")]


class _ApiProbe:
    """Admin GETs against the apiserver for readiness checks, without a client library."""

    def __init__(self, server: str, certs: pki.Certificates) -> None:
        self.server = server
        self.context = ssl.create_default_context(cafile=str(certs.ca.cert))
        self.context.load_cert_chain(str(certs.admin.cert), str(certs.admin.key))

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(  # noqa: S310 - fixed https URL
                self.server + path, context=self.context, timeout=5
            ) as response:
                body: dict[str, Any] = json.loads(response.read() or b"{}")
                return body
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 - fixed https URL
                self.server + path, context=self.context, timeout=5
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False


def _etcd_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return bool(json.loads(response.read()).get("health") == "true")
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return False


def _healthz(port: int) -> bool:
    """The component's own self-signed serving cert: only liveness matters here."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", context=context, timeout=2
        ) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _group_rss(pgid: int) -> int:
    total = 0
    for pid in processes.group_members([pgid]):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            continue
    return total


def _log_tail(layout: Layout, name: str, lines: int = 40) -> str:
    path = layout.logs / f"{name}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _died_message(record: ProcessRecord, layout: Layout) -> str:
    tail = _log_tail(layout, record.name)
    return f"{record.name} exited during start-up; its log ends with:\n{tail}"
