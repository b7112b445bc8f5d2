"""The life of a transfer beyond the copy: cache expiry, destroy, queueing, restarts."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from datatx_operator.models import RcloneOptions
from tests.operator.submit import destroy, submit
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.storage import StorageServer


def _jobs(namespace: Namespace) -> list[dict[str, Any]]:
    out = namespace.cluster.kubectl("get", "jobs", "-n", namespace.name, "-o", "json")
    return list(json.loads(out.stdout)["items"])


def test_finished_transfers_are_removed_after_the_cache_time(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    webdav_server.write("d/f.txt", b"cached for a while")
    run_operator(datatx_namespace, DATATX_CACHE_MAX_SECONDS="5")
    name = submit(datatx_namespace, webdav_server, "/d", s3_server, "/bucket/d")
    finished = datatx_namespace.wait_phase(name, "Finished", timeout=180)
    assert finished["status"]["cacheExpiry"]

    deadline = time.monotonic() + 60
    while datatx_namespace.exists("datatransfers.datatx.io", name) and time.monotonic() < deadline:
        time.sleep(0.5)

    assert not datatx_namespace.exists("datatransfers.datatx.io", name)
    assert s3_server.read("bucket/d/f.txt") == b"cached for a while", "the data stays"


def test_destroy_during_a_copy_stops_the_pod_and_destroys_the_credentials(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    webdav_server.write("big/blob.bin", os.urandom(64 * 1024 * 1024))
    run_operator(datatx_namespace)
    name = submit(
        datatx_namespace,
        webdav_server,
        "/big",
        s3_server,
        "/bucket/big",
        rclone=RcloneOptions(bandwidth_limit="2M"),
    )
    datatx_namespace.wait_for(
        name, lambda b: (b.get("status") or {}).get("progress", {}).get("bytes", 0) > 0
    )
    job = f"{name}-run0"

    destroy(datatx_namespace, name)
    status = datatx_namespace.wait_phase(name, "Cancelled", timeout=90)["status"]

    assert status["reason"] == "Cancelled"
    assert status["lastRun"]["reason"] == "Cancelled", "the mover saw SIGTERM and said so"
    assert not datatx_namespace.exists("job", job)
    assert not datatx_namespace.exists("secret", f"{name}-credential")
    assert not datatx_namespace.exists("secret", f"{name}-remotes")
    assert not s3_server.path("bucket/big/blob.bin").exists(), "no partial file is left"
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["CredentialsDestroyed"] == "True"


def test_a_cap_on_running_transfers_queues_the_rest_in_order(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    for index in range(5):
        webdav_server.write(f"q{index}/f.bin", os.urandom(3 * 1024 * 1024))
    run_operator(datatx_namespace, DATATX_MAX_RUNNING_PER_NAMESPACE="2")
    names = [
        submit(
            datatx_namespace,
            webdav_server,
            f"/q{index}",
            s3_server,
            f"/bucket/q{index}",
            rclone=RcloneOptions(bandwidth_limit="4M"),
        )
        for index in range(5)
    ]
    time.sleep(0.5)

    most_running = 0
    queued_seen = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        bodies = [datatx_namespace.get(name) for name in names]
        statuses = [body.get("status") or {} for body in bodies]
        running = sum(
            1 for s in statuses if s.get("job") and s.get("phase") in ("Pending", "InProgress")
        )
        most_running = max(most_running, running)
        queued_seen |= {
            n for n, s in zip(names, statuses, strict=True) if s.get("reason") == "Queued"
        }
        if all(s.get("phase") == "Finished" for s in statuses):
            break
        time.sleep(0.3)

    assert all(datatx_namespace.get(name)["status"]["phase"] == "Finished" for name in names)
    assert most_running == 2
    assert queued_seen >= set(names[2:])
    starts = [datatx_namespace.get(name)["status"]["startTime"] for name in names]
    assert starts == sorted(starts), "queued transfers start in the order they came"


def test_sigkill_of_the_operator_loses_nothing_and_starts_nothing_twice(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    count = 20
    for index in range(count):
        webdav_server.write(f"k{index}/f.bin", os.urandom(1024 * 1024))
    operator = run_operator(datatx_namespace)
    names = [
        submit(datatx_namespace, webdav_server, f"/k{index}", s3_server, f"/bucket/k{index}")
        for index in range(count)
    ]
    datatx_namespace.wait_for(names[count // 2], lambda b: bool((b.get("status") or {}).get("job")))

    operator.kill()
    time.sleep(2)
    operator.start()

    for name in names:
        status = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=300)["status"]
        assert status["phase"] == "Finished", (name, status)
    jobs = _jobs(datatx_namespace)
    per_transfer = sorted(job["metadata"]["labels"]["datatx.io/transfer"] for job in jobs)
    assert per_transfer == sorted(names), "exactly one Job per transfer"
    for job in jobs:
        job_status = job["status"]
        assert (job_status.get("succeeded"), job_status.get("failed", 0)) == (1, 0), job_status
    for index in range(count):
        assert s3_server.read(f"bucket/k{index}/f.bin") == webdav_server.read(f"k{index}/f.bin")
    assert operator.starts == 2
