"""Command lines of the cluster's processes, from the ports and files one cluster uses."""

from __future__ import annotations

import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from localcluster import tools
from localcluster.pki import Certificates

SERVICE_RANGE = "10.96.0.0/24"
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Ports:
    """Every port one cluster listens on, all on 127.0.0.1."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    kubelet: int
    controller_manager: int
    scheduler: int

    @classmethod
    def pick(cls) -> Ports:
        """Free ports, held open together while choosing so that they are distinct."""
        sockets = []
        try:
            for _ in range(6):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
            return cls(*(sock.getsockname()[1] for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Layout:
    """Where one cluster keeps its files inside its work dir."""

    root: Path

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kubeconfigs(self) -> Path:
        return self.root / "kubeconfigs"

    @property
    def nodeagent(self) -> Path:
        return self.root / "nodeagent"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    def owned_paths(self) -> list[Path]:
        """What a fresh start removes; nothing else in the dir is touched."""
        return [
            self.etcd_data,
            self.pki,
            self.logs,
            self.kubeconfigs,
            self.nodeagent,
            self.state,
            self.admin_kubeconfig,
        ]


def etcd(layout: Layout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(tools.tool_path("etcd")),
        "--name=default",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--initial-cluster-state=new",
        "--quota-backend-bytes=536870912",
        "--snapshot-count=5000",
        # A throwaway development store: durability is not worth the disk syncs.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver(layout: Layout, ports: Ports, certs: Certificates) -> list[str]:
    return [
        str(tools.tool_path("kube-apiserver")),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={certs.apiserver.cert}",
        f"--tls-private-key-file={certs.apiserver.key}",
        f"--client-ca-file={certs.ca.cert}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={certs.service_account_pub}",
        f"--service-account-signing-key-file={certs.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_RANGE}",
        f"--kubelet-client-certificate={certs.apiserver_kubelet_client.cert}",
        f"--kubelet-client-key={certs.apiserver_kubelet_client.key}",
        f"--kubelet-certificate-authority={certs.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def controller_manager(
    layout: Layout, ports: Ports, certs: Certificates, kubeconfig: Path
) -> list[str]:
    return [
        str(tools.tool_path("kube-controller-manager")),
        f"--kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.pki / 'controller-manager-serving'}",
        "--leader-elect=false",
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={certs.service_account_key}",
        f"--root-ca-file={certs.ca.cert}",
        f"--cluster-signing-cert-file={certs.ca.cert}",
        f"--cluster-signing-key-file={certs.ca.key}",
        "--profiling=false",
    ]


def scheduler(layout: Layout, ports: Ports, kubeconfig: Path) -> list[str]:
    return [
        str(tools.tool_path("kube-scheduler")),
        f"--kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={layout.pki / 'scheduler-serving'}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def nodeagent(
    layout: Layout, ports: Ports, certs: Certificates, node_name: str, images: Path | None
) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "localcluster.nodeagent",
        f"--node-name={node_name}",
        f"--state-dir={layout.nodeagent}",
        f"--apiserver=https://127.0.0.1:{ports.apiserver}",
        f"--ca={certs.ca.cert}",
        f"--client-cert={certs.node_client.cert}",
        f"--client-key={certs.node_client.key}",
        f"--serving-cert={certs.node_serving.cert}",
        f"--serving-key={certs.node_serving.key}",
        f"--port={ports.kubelet}",
    ]
    if images is not None:
        argv.append(f"--images={images}")
    return argv
