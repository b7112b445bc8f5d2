"""kubectl and helm against one local cluster; objects go in through stdin, so that no
secret is ever on a command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from localcluster.launcher import Cluster, ClusterError, KubectlError
from localcluster.processes import alive
from localcluster.tools import tool_path

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "deploy" / "helm" / "datatx"


def ensure_cluster(workdir: Path) -> tuple[Cluster, bool]:
    """The cluster running in `workdir`, else a new one; and whether it was started now."""
    try:
        cluster = Cluster.attach(workdir)
    except ClusterError:
        cluster = None
    if cluster is not None and cluster.records and all(alive(r) for r in cluster.records):
        return cluster, False
    cluster = Cluster(workdir)
    cluster.start()
    return cluster, True


def helm(cluster: Cluster, *args: str, timeout: float = 600) -> str:
    command = [str(tool_path("helm")), f"--kubeconfig={cluster.kubeconfig}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise KubectlError(result.returncode, command, result.stdout, result.stderr)
    return result.stdout


def apply(cluster: Cluster, *objects: dict[str, Any]) -> None:
    """Server-side apply, the objects read from stdin."""
    document = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=devstack",
        "-f",
        "-",
        input=json.dumps(document),
    )


def ensure_namespace(cluster: Cluster, name: str, *, restricted: bool) -> None:
    """A namespace; `restricted`: it enforces the restricted Pod Security Standard."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    apply(
        cluster,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}},
    )
    cluster.wait_for_namespace_defaults(name)


def secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    }
