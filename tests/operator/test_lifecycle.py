"""The life of a transfer beyond the copy: cache expiry, destroy, queueing, restarts."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from datatx_operator import api, jobs
from datatx_operator.index import TERMINAL
from datatx_operator.models import DataTransferSpec, RcloneOptions, Result, RunReport
from datatx_operator.settings import OperatorSettings
from datatx_operator.transitions import parse_time
from tests.operator.observe import assert_one_job_each_ran_once, metric
from tests.operator.submit import add_credential, destroy, submit
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.storage import StorageServer


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
    run_operator(datatx_namespace)
    name = _submit_slow_copy(datatx_namespace, webdav_server, s3_server, "big", "2M")
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


def test_a_run_past_its_deadline_fails_as_timeout_and_is_not_retried(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    """`timeoutSeconds` is the Job's activeDeadlineSeconds: the Job controller stops the pod
    (the mover sees SIGTERM, like a cancel), yet the transfer must read Timeout."""
    run_operator(datatx_namespace)
    name = _submit_slow_copy(
        datatx_namespace, webdav_server, s3_server, "slow", "1M", retries=3, timeout_seconds=10
    )
    status = datatx_namespace.wait_phase(name, "Failed", timeout=120)["status"]

    assert status["reason"] == "Timeout", status
    assert "10 s" in status["message"], status["message"]
    assert status["attempts"] == 1, "a deadline is not retried"
    started, completed = parse_time(status["startTime"]), parse_time(status["completionTime"])
    assert started is not None
    assert completed is not None
    assert 9 <= (completed - started).total_seconds() < 40, (started, completed)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["reason"] == "Timeout"
    assert datatx_namespace.exists("secret", f"{name}-credential"), "kept for a retry"
    [job] = datatx_namespace.objects("jobs")
    assert not job["status"].get("active"), "no mover pod runs on"
    assert not s3_server.path("bucket/slow/blob.bin").exists(), "no partial file is left"


def test_an_operator_killed_between_creating_a_job_and_recording_it_adopts_that_job(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    """The narrowest window of a SIGKILL, made exact: the Job exists, the status does not name
    it. The operator that comes back must follow that Job, not start a second run."""
    webdav_server.write("w/f.bin", os.urandom(256 * 1024))
    name = submit(datatx_namespace, webdav_server, "/w", s3_server, "/bucket/w")
    body = datatx_namespace.get(name)
    _create_the_operators_job(datatx_namespace, body)
    [created] = datatx_namespace.objects("jobs")
    assert not (body.get("status") or {}).get("job"), "the status does not know the Job yet"

    run_operator(datatx_namespace)
    status = datatx_namespace.wait_phase(name, "Finished", "Failed")["status"]

    assert status["phase"] == "Finished", status
    assert status["job"] == created["metadata"]["name"]
    assert status["attempts"] == 1
    [job] = datatx_namespace.objects("jobs")
    assert job["metadata"]["uid"] == created["metadata"]["uid"], "the same Job, not a new one"
    assert job["status"].get("failed", 0) == 0
    assert s3_server.read("bucket/w/f.bin") == webdav_server.read("w/f.bin")


def test_a_success_reported_before_the_job_counts_its_pod_is_one_attempt(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    """Seen under `make chaos`: the mover reported success while the loaded Job controller
    had not yet counted its pod, and the transfer ended Finished with 0 attempts. Made exact
    here: the Job is suspended (it never counts a pod) and the mover's report is in place."""
    name = submit(datatx_namespace, webdav_server, "/w", s3_server, "/bucket/w")
    job = _create_the_operators_job(datatx_namespace, datatx_namespace.get(name), suspend=True)
    report = RunReport(
        job=job,
        pod=f"{job}-mover",
        reason="Succeeded",
        result=Result(files=1, bytes=1024),
        finish_time=dt.datetime.now(dt.UTC),
    )
    status = {"job": job, "lastRun": report.model_dump(mode="json", by_alias=True)}
    datatx_namespace.cluster.kubectl(
        "patch", "dt", name, "-n", datatx_namespace.name, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip

    run_operator(datatx_namespace)
    status = datatx_namespace.wait_phase(name, "Finished", "Failed")["status"]

    assert status["phase"] == "Finished", status
    assert status["attempts"] == 1
    [counted] = datatx_namespace.objects("jobs")
    assert not counted["status"].get("active"), "the Job counted no pod"


def _create_the_operators_job(
    namespace: Namespace, body: dict[str, Any], *, suspend: bool = False
) -> str:
    """The Job the operator would create for this transfer, created behind its back."""
    settings = OperatorSettings(
        namespaces=[namespace.name], mover_service_account=namespace.service_account("mover")
    )
    job = jobs.build_job(body, DataTransferSpec.model_validate(body["spec"]), settings)
    job["spec"]["suspend"] = suspend
    namespace.cluster.kubectl("create", "-n", namespace.name, "-f", "-", input=json.dumps(job))
    return str(job["metadata"]["name"])


def _submit_slow_copy(
    namespace: Namespace,
    source: StorageServer,
    destination: StorageServer,
    folder: str,
    bandwidth_limit: str,
    retries: int = 2,
    timeout_seconds: int = 86400,
) -> str:
    """A 64 MiB copy held to a bandwidth limit, so that it is still running when acted on."""
    source.write(f"{folder}/blob.bin", os.urandom(64 * 1024 * 1024))
    return submit(
        namespace,
        source,
        f"/{folder}",
        destination,
        f"/bucket/{folder}",
        rclone=RcloneOptions(bandwidth_limit=bandwidth_limit),
        retries=retries,
        timeout_seconds=timeout_seconds,
    )


def _statuses(namespace: Namespace, names: list[str]) -> list[dict[str, Any]]:
    """The transfers' statuses in one list call: one consistent snapshot, unlike one get
    per transfer, in which a run could be seen ending after the next was seen starting."""
    by_name = {
        item["metadata"]["name"]: item for item in namespace.objects(f"{api.PLURAL}.{api.GROUP}")
    }
    return [by_name[name].get("status") or {} for name in names]


@dataclass
class QueueRun:
    """What a poller saw while queued transfers ran, then their final statuses."""

    names: list[str]
    most_running: int = 0
    queued: dict[str, set[str]] = field(default_factory=dict)  # name: its Queued messages
    final: list[dict[str, Any]] = field(default_factory=list)


def _run_queued(
    namespace: Namespace,
    webdav_server: StorageServer,
    s3_server: StorageServer,
    count: int,
    rclone: RcloneOptions | None = None,
) -> QueueRun:
    """Submit `count` transfers at once and poll them until all have ended."""
    for index in range(count):
        webdav_server.write(f"q{index}/f.bin", os.urandom(3 * 1024 * 1024))
    run = QueueRun(
        [
            submit(namespace, webdav_server, f"/q{i}", s3_server, f"/bucket/q{i}", rclone=rclone)
            for i in range(count)
        ]
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        statuses = _statuses(namespace, run.names)
        running = sum(
            1 for s in statuses if s.get("job") and s.get("phase") in ("Pending", "InProgress")
        )
        run.most_running = max(run.most_running, running)
        for name, status in zip(run.names, statuses, strict=True):
            if status.get("reason") == "Queued":
                run.queued.setdefault(name, set()).add(status["message"])
        if all(s.get("phase") in TERMINAL for s in statuses):
            break
        time.sleep(0.3)
    run.final = [namespace.get(name)["status"] for name in run.names]
    assert [s["phase"] for s in run.final] == ["Finished"] * count, run.final
    return run


def test_a_cap_on_running_transfers_queues_the_rest_in_order(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    run_operator(datatx_namespace, DATATX_MAX_RUNNING_PER_NAMESPACE="2")
    run = _run_queued(
        datatx_namespace, webdav_server, s3_server, 5, RcloneOptions(bandwidth_limit="4M")
    )

    assert run.most_running == 2
    assert set(run.queued) >= set(run.names[2:])
    assert any(f"in namespace {datatx_namespace.name}" in m for m in run.queued[run.names[-1]])
    starts = [status["startTime"] for status in run.final]
    assert starts == sorted(starts), "queued transfers start in the order they came"


def test_the_overall_cap_runs_one_at_a_time_in_order(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    run_operator(
        datatx_namespace, DATATX_MAX_RUNNING_TOTAL="1", DATATX_MAX_RUNNING_PER_NAMESPACE="10"
    )
    # Slow enough that each run outlasts the submits, so every queued state is seen.
    run = _run_queued(
        datatx_namespace, webdav_server, s3_server, 3, RcloneOptions(bandwidth_limit="1M")
    )

    assert run.most_running == 1
    assert set(run.queued) == set(run.names[1:]), "all but the first waited"
    for name in run.names[1:]:
        assert any("of at most 1 transfers are running" in m for m in run.queued[name]), name
    for earlier, later in itertools.pairwise(run.final):
        assert earlier["completionTime"] <= later["startTime"], (  # both RFC 3339, UTC
            "the next one starts only after the previous one ended"
        )


def test_a_run_that_ends_while_the_operator_is_down_keeps_its_start_time(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    webdav_server.write("s/f.txt", b"small and fast")
    operator = run_operator(datatx_namespace)
    name = submit(
        datatx_namespace, webdav_server, "/s", s3_server, "/bucket/s", credential_secret=False
    )
    datatx_namespace.wait_for(name, lambda b: bool((b.get("status") or {}).get("job")))
    operator.kill()
    assert "startTime" not in datatx_namespace.get(name)["status"], "its pod waits for a Secret"

    add_credential(datatx_namespace, name, s3_server.credential)
    datatx_namespace.cluster.kubectl(
        "wait", "-n", datatx_namespace.name, "--for=condition=Complete", f"job/{name}-run0"
    )
    operator.start()
    status = datatx_namespace.wait_phase(name, "Finished", "Failed")["status"]

    assert status["phase"] == "Finished", status
    started, completed = parse_time(status["startTime"]), parse_time(status["completionTime"])
    assert started is not None
    assert completed is not None
    assert started <= completed
    labels = {"driver": "rclone", "phase": "Finished"}
    assert metric(operator, "datatx_transfer_duration_seconds_count", **labels) == 1
    took = metric(operator, "datatx_transfer_duration_seconds_sum", **labels)
    assert took == (completed - started).total_seconds()


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
    assert_one_job_each_ran_once(datatx_namespace, names)
    for index in range(count):
        assert s3_server.read(f"bucket/k{index}/f.bin") == webdav_server.read(f"k{index}/f.bin")
    assert operator.starts == 2
