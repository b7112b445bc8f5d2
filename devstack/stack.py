"""`make dev-up` and `make dev-down`: the local cluster with datatx installed by its chart,
and the files that let the CLI find the bridge (`<dir>/bridge-address`, `<dir>/bridge-token`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from devstack import kube
from devstack.release import ADMIN, Release, new_token, write_client_files
from localcluster.launcher import Cluster, ClusterError

NAMESPACE = "datatx"
CLIENT_FILES = ("bridge-address", "bridge-token", "datatx-values.yaml")
CRD = kube.CHART / "crds" / "datatransfers.datatx.io.yaml"


@dataclass
class Stack:
    cluster: Cluster
    release: Release
    started_cluster: bool
    install_seconds: float

    @property
    def address_file(self) -> Path:
        return self.cluster.workdir / "bridge-address"

    @property
    def token_file(self) -> Path:
        return self.cluster.workdir / "bridge-token"


def up(workdir: Path, namespace: str = NAMESPACE) -> Stack:
    """Start (or reuse) the cluster and install (or upgrade) the chart; idempotent."""
    cluster, started = kube.ensure_cluster(workdir)
    # Helm installs a chart's CRDs only once; a changed CRD must be applied on upgrade.
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kube.ensure_namespace(cluster, namespace, restricted=True)
    token_path = cluster.workdir / "bridge-token"
    token = token_path.read_text().strip() if token_path.is_file() else new_token()
    release = Release(cluster, namespace)
    release.put_tokens({token: ADMIN})
    # The bridge reads its tokens at start: a new token rolls it through this annotation.
    digest = hashlib.sha256(token.encode()).hexdigest()
    seconds = release.install(
        cluster.workdir / "datatx-values.yaml",
        {"bridge": {"podAnnotations": {"datatx.io/static-tokens-sha256": digest}}},
    )
    write_client_files(cluster.workdir, release.grpc_address, token)
    return Stack(cluster, release, started, seconds)


def down(workdir: Path) -> bool:
    """Stop the cluster and every pod; remove the client files. False: nothing ran."""
    for name in CLIENT_FILES:
        (workdir / name).unlink(missing_ok=True)
    try:
        cluster = Cluster.attach(workdir)
    except ClusterError:
        return False
    cluster.stop()
    return True
