"""Controllers of kube-controller-manager the project relies on: ttl-after-finished cleans up
finished Jobs, and the namespace controller empties and removes a deleted namespace."""

from __future__ import annotations

from pathlib import Path

from localcluster.launcher import Cluster
from tests.cluster.helpers import (
    Manifest,
    apply,
    first_line,
    get,
    pid_gone,
    pod,
    python_container,
    wait_until,
)


def _quick_job(name: str, ttl: int | None) -> Manifest:
    spec: Manifest = {
        "backoffLimit": 0,
        "template": {
            "spec": {"restartPolicy": "Never", "containers": [python_container("run", "pass")]}
        },
    }
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def test_ttl_after_finished_deletes_a_finished_job(
    cluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    apply(cluster, ns, _quick_job("kept", ttl=None), _quick_job("expiring", ttl=1))
    cluster.kubectl("wait", "-n", ns, "--for=condition=Complete", "job/kept", "--timeout=90s")

    wait_until(
        lambda: get(cluster, ns, "job", "expiring") is None, timeout=90, what="the job's expiry"
    )
    # The twin without a TTL finished as well and stays: the TTL, not the finish, deletes.
    kept = get(cluster, ns, "job", "kept")
    assert kept is not None
    assert kept["status"].get("succeeded") == 1


def test_deleting_a_namespace_removes_its_objects_and_ends_its_pods(
    cluster: Cluster, cluster_namespace: str, tmp_path: Path
) -> None:
    ns = cluster_namespace
    cluster.kubectl("create", "secret", "generic", "doomed", "-n", ns, "--from-literal=k=v")
    script = """
import os, pathlib, time
pathlib.Path("/marks/pid").write_text(f"{os.getpid()}\\n")
time.sleep(3600)
"""
    container = python_container(
        "wait", script, volumeMounts=[{"name": "marks", "mountPath": "/marks"}]
    )
    volumes = [{"name": "marks", "hostPath": {"path": str(tmp_path)}}]
    apply(cluster, ns, pod("resident", [container], volumes=volumes))
    pid = int(wait_until(lambda: first_line(tmp_path / "pid"), what="the pod start"))

    # Waits until the namespace controller has removed everything in it, then the namespace.
    cluster.kubectl("delete", "namespace", ns, "--timeout=150s")

    assert get(cluster, "default", "namespace", ns) is None
    assert pid_gone(pid), "the pod's process ended before its namespace went"
