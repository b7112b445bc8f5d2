"""`helm install`, `helm upgrade` and `helm uninstall` on the local cluster, as a site
operator runs them: operator and bridge as pods (the node agent runs them as uid 65532 in a
namespace enforcing the restricted Pod Security Standard), a real transfer through the
installed bridge, changed values taking effect, and uninstall leaving only the CRD."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from datatx.v1 import datatx_pb2 as pb
from datatx_operator import api
from localcluster.launcher import Cluster
from tests.bridge.conftest import eventually
from tests.deploy.installed import Installed, installed
from tests.servers.storage import StorageServer

CRD = f"{api.PLURAL}.{api.GROUP}"
CHART_KINDS = (
    "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets"
)


@pytest.fixture
def release(cluster: Cluster, datatx_crd: None, tmp_path: Path) -> Iterator[Installed]:
    with installed(cluster, tmp_path) as setup:
        yield setup


def _transfer(
    setup: Installed, source: StorageServer, destination: StorageServer, dest: str
) -> pb.Transfer:
    """A copy of `source:/data` through the installed bridge; the last state watched."""
    request = pb.DoTransferRequest(
        src="src:/data",
        dest=f"dst:{dest}",
        remotes=[
            pb.Remote(
                name="src",
                type=source.kind,
                options=source.options,
                secret_options=source.secret_options,
            ),
            pb.Remote(name="dst", type=destination.kind, options=destination.options),
        ],
        credential=destination.credential,
    )
    seed, alice = setup.seed(), setup.auth("alice")
    name = seed.DoTransfer(request, metadata=alice, timeout=10).transfer_id
    states = list(
        seed.WatchTransfer(pb.WatchTransferRequest(transfer_id=name), metadata=alice, timeout=180)
    )
    return states[-1]


def _digests(tree: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in tree.items()}


def test_installed_chart_runs_operator_and_bridge_as_pods_and_moves_bytes(
    release: Installed, webdav_server: StorageServer, s3_server: StorageServer
) -> None:
    for component in ("operator", "bridge"):
        (pod,) = release.pods(component)
        assert pod["status"]["phase"] == "Running"
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", pod["status"]
        assert pod["spec"]["serviceAccountName"] == f"datatx-{component}"
        assert pod["spec"]["securityContext"]["runAsUser"] == 65532
    restricted = release.cluster.kubectl(
        "get", "namespace", release.namespace, "-o", "jsonpath={.metadata.labels}"
    ).stdout
    assert '"pod-security.kubernetes.io/enforce":"restricted"' in restricted

    sent = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(700_000)}
    for path, data in sent.items():
        webdav_server.write(f"data/{path}", data)
    final = _transfer(release, webdav_server, s3_server, "/bucket/copy")

    assert final.status == pb.FINISHED, final
    assert _digests(s3_server.tree("bucket/copy")) == _digests(sent)
    (job,) = release.get("jobs", "-l", f"{api.LABEL_TRANSFER}={final.transfer_id}")["items"]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "datatx-mover"
    assert (
        job["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/datatx/datatx:0.1.0"
    )


def test_upgrade_with_changed_values_takes_effect(
    release: Installed, webdav_server: StorageServer, wsgidav_server: StorageServer
) -> None:
    (before,) = release.pods("operator")
    release.install({"transfers": {"cacheMaxSeconds": 321}})

    (after,) = release.pods("operator")
    assert after["metadata"]["uid"] != before["metadata"]["uid"]  # Recreate: a new pod
    env = {e["name"]: e.get("value") for e in after["spec"]["containers"][0]["env"]}
    assert env["DATATX_CACHE_MAX_SECONDS"] == "321"
    webdav_server.write("data/x.txt", b"after the upgrade\n")
    final = _transfer(release, webdav_server, wsgidav_server, "/in")
    assert final.status == pb.FINISHED, final
    status = release.get(CRD, final.transfer_id)["status"]
    completed = dt.datetime.fromisoformat(status["completionTime"])
    expiry = dt.datetime.fromisoformat(status["cacheExpiry"])
    assert (expiry - completed).total_seconds() == pytest.approx(321, abs=2)
    assert wsgidav_server.read("in/x.txt") == b"after the upgrade\n"


def test_uninstall_removes_everything_but_the_crd(release: Installed) -> None:
    assert release.kubectl("get", CHART_KINDS, "-o", "name").stdout.strip()
    release.release.uninstall()

    def left() -> str:
        selector = "app.kubernetes.io/part-of=datatx"
        return str(release.kubectl("get", CHART_KINDS, "-l", selector, "-o", "name").stdout)

    assert eventually(lambda: left().strip() == "", timeout=60), left()
    names = release.kubectl(
        "get", "serviceaccounts,roles,rolebindings,services,deployments", "-o", "name"
    ).stdout.split()
    assert [name for name in names if "datatx" in name] == []
    assert release.cluster.kubectl("get", "crd", CRD, check=False).returncode == 0
