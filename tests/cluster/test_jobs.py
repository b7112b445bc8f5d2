"""Jobs on the local cluster: rclone moves real bytes; failures are retried, then fail."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from localcluster.launcher import Cluster
from tests.cluster.helpers import Manifest, apply, get, pods_of_job, python_container


def _job(name: str, pod_spec: Manifest, backoff_limit: int) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": pod_spec}},
    }


def _tree_digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_rclone_job_copies_real_files_and_completes(
    cluster: Cluster, cluster_namespace: str, tmp_path: Path
) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    (source / "nested" / "deeper").mkdir(parents=True)
    target.mkdir()
    (source / "random.bin").write_bytes(os.urandom(3 * 2**20 + 17))
    (source / "nested" / "notes.txt").write_text("hello from the source side\n")
    (source / "nested" / "deeper" / "small.bin").write_bytes(os.urandom(1))
    (source / "empty").write_bytes(b"")
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "rclone",
                "image": "rclone/rclone:1.75.2",
                "args": ["copy", "/data/source", "/data/target", "--create-empty-src-dirs"],
                "volumeMounts": [
                    {"name": "source", "mountPath": "/data/source", "readOnly": True},
                    {"name": "target", "mountPath": "/data/target"},
                ],
            }
        ],
        "volumes": [
            {"name": "source", "hostPath": {"path": str(source), "type": "Directory"}},
            {"name": "target", "hostPath": {"path": str(target), "type": "Directory"}},
        ],
    }
    apply(cluster, cluster_namespace, _job("copy", pod_spec, backoff_limit=0))
    cluster.kubectl(
        "wait", "-n", cluster_namespace, "--for=condition=Complete", "job/copy", "--timeout=90s"
    )

    expected = _tree_digests(source)
    assert len(expected) == 4
    assert _tree_digests(target) == expected
    (pod,) = pods_of_job(cluster, cluster_namespace, "copy")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"


def test_failing_pod_is_retried_up_to_backoff_limit_then_the_job_fails(
    cluster: Cluster, cluster_namespace: str, tmp_path: Path
) -> None:
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    script = (
        "import os, pathlib\n"
        "log = pathlib.Path('/attempts/log')\n"
        "with log.open('a') as handle:\n"
        "    handle.write(os.environ['POD_NAME'] + '\\n')\n"
        "raise SystemExit(3)\n"
    )
    container = python_container(
        "fail",
        script,
        env=[{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        volumeMounts=[{"name": "attempts", "mountPath": "/attempts"}],
    )
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "attempts", "hostPath": {"path": str(attempts)}}],
    }
    apply(cluster, cluster_namespace, _job("flaky", pod_spec, backoff_limit=2))
    cluster.kubectl(
        "wait", "-n", cluster_namespace, "--for=condition=Failed", "job/flaky", "--timeout=180s"
    )

    runs = (attempts / "log").read_text().split()
    assert len(runs) == 3, "one first attempt and backoffLimit=2 retries"
    assert len(set(runs)) == 3, "every attempt is a new pod"
    job = get(cluster, cluster_namespace, "job", "flaky")
    assert job is not None
    assert job["status"]["failed"] == 3
    failed = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed[0]["reason"] == "BackoffLimitExceeded"
    pods = pods_of_job(cluster, cluster_namespace, "flaky")
    assert sorted(p["metadata"]["name"] for p in pods) == sorted(runs)
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
