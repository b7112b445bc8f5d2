"""The FTS3 driver against the FTS3 test server (tests/servers/fts3.py, which reproduces the
captured FTS3 3.13.4 answers) and a real WebDAV server holding the source files."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from datatx_operator.drivers.base import DriverError, Reason
from datatx_operator.drivers.fts import FtsDriver
from datatx_operator.models import Progress
from datatx_operator.mover import MoverSettings, supervise
from tests.drivers.drive import (
    assert_no_secret,
    assert_no_secret_on_cluster,
    context,
    remote_secrets,
    run,
    submit,
)
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.fts3 import FtsServer
from tests.servers.storage import StorageServer

FILES = {"a.bin": b"a" * 1000, "sub/b.bin": b"b" * 2000, "c.bin": b"c" * 300}


def fts_driver(
    tmp_path: Path,
    fts: FtsServer,
    webdav: StorageServer,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    source: str = "src:data/",
    **options: Any,
) -> FtsDriver:
    options.setdefault("request_retries", 2)
    secrets = {"credential": token or fts.token}
    secrets.update({f"src.{k}": v for k, v in webdav.secret_options.items()})
    driver = FtsDriver(
        context(
            tmp_path,
            secrets,
            source=source,
            destination="dst:archive/",
            remotes=[
                {
                    "name": "src",
                    "type": "webdav",
                    "options": webdav.options,
                    "secretOptions": list(webdav.secret_options),
                },
                {"name": "dst", "type": "webdav", "options": {"url": "https://dst.example.org/"}},
            ],
            driver="fts",
            fts={"endpoint": endpoint or fts.url, "pollIntervalSeconds": 1, **options},
        )
    )
    driver.backoff_seconds = 0.05
    return driver


async def held_job(
    tmp_path: Path, fts: FtsServer, webdav: StorageServer, **options: Any
) -> FtsDriver:
    """A started driver whose FTS3 job stays ACTIVE until the test lets it go."""
    fts.hold = True
    driver = fts_driver(tmp_path, fts, webdav, **options)
    await driver.start()
    return driver


def cluster_spec(
    source: StorageServer, endpoint: str, path: str = "src:data/", **options: object
) -> dict[str, Any]:
    """The spec of an FTS3 transfer from the WebDAV `source`, as the bridge submits it."""
    return {
        "source": path,
        "destination": "dst:archive/",
        "remotes": [
            {
                "name": "src",
                "type": "webdav",
                "options": source.options,
                "secretOptions": list(source.secret_options),
            },
            {"name": "dst", "type": "webdav", "options": {"url": "https://dst.example.org/"}},
        ],
        "driver": "fts",
        "fts": {"endpoint": endpoint, "pollIntervalSeconds": 1, **options},
    }


def write_source(webdav: StorageServer) -> StorageServer:
    """The WebDAV server, holding FILES under data/."""
    for name, data in FILES.items():
        webdav.write(f"data/{name}", data)
    return webdav


@pytest.fixture
def source(webdav_server: StorageServer) -> StorageServer:
    return write_source(webdav_server)


async def test_directory_is_submitted_file_by_file_and_finishes(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = fts_driver(tmp_path, fts3_server, source)

    outcome, samples = await run(driver)

    assert outcome.succeeded, outcome.message
    assert outcome.result.files == 3
    assert outcome.result.bytes == sum(len(data) for data in FILES.values())
    assert outcome.result.remote_id == driver.job_id
    job = fts3_server.job(str(driver.job_id))
    port = source.port
    assert sorted((f["source_surl"], f["dest_surl"]) for f in job.files) == [
        (f"dav://127.0.0.1:{port}/data/a.bin", "davs://dst.example.org/archive/a.bin"),
        (f"dav://127.0.0.1:{port}/data/c.bin", "davs://dst.example.org/archive/c.bin"),
        (f"dav://127.0.0.1:{port}/data/sub/b.bin", "davs://dst.example.org/archive/sub/b.bin"),
    ]
    assert job.fields["verify_checksum"] == "b"
    assert job.fields["job_metadata"]["datatx_transfer"] == "default/dt-test"
    # progress is finished files over all files, and it only grows
    files_seen = [sample.files for sample in samples if sample.total_files]
    assert files_seen == sorted(files_seen)
    assert {1, 2} <= set(files_seen)
    assert samples[-1].files == samples[-1].total_files == 3
    assert samples[-1].percent == 100


async def test_single_file_to_a_folder_keeps_its_name(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = fts_driver(tmp_path, fts3_server, source, source="src:data/a.bin")

    outcome, _ = await run(driver)

    assert outcome.succeeded
    (record,) = fts3_server.job(str(driver.job_id)).files
    assert record["dest_surl"] == "davs://dst.example.org/archive/a.bin"
    assert record["user_filesize"] == 1000


async def test_finisheddirty_is_a_failure_with_the_reason_of_each_failed_file(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    overwrite = "TRANSFER [5] DESTINATION OVERWRITE file exists and overwrite is not enabled"
    fts3_server.plan("FINISHED", "FINISHED", "FAILED", reasons={2: overwrite})
    driver = fts_driver(tmp_path, fts3_server, source)

    outcome, _ = await run(driver)

    assert outcome.reason is Reason.PARTIAL_FAILURE
    assert not outcome.succeeded
    assert "1 of 3 files failed" in outcome.message
    assert f"b.bin: {overwrite}" in outcome.message
    assert (outcome.result.files, outcome.result.errors) == (2, 1)


async def test_failed_job_names_the_fts_reasons(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    fts3_server.plan("FAILED", reasons={0: "SOURCE [2] Result HTTP 404 : File not found"})
    driver = fts_driver(tmp_path, fts3_server, source)

    outcome, _ = await run(driver)

    assert outcome.reason is Reason.REMOTE_FAILED
    assert "SOURCE [2] Result HTTP 404 : File not found" in outcome.message
    assert outcome.result.errors == 3


async def test_cancel_stops_the_fts_job(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = await held_job(tmp_path, fts3_server, source)
    waiting = asyncio.create_task(driver.wait())
    await asyncio.sleep(1.5)

    assert await driver.cancel() is True

    outcome = await asyncio.wait_for(waiting, 10)
    assert outcome.reason is Reason.CANCELLED
    job = fts3_server.job(str(driver.job_id))
    assert job.state == "CANCELED"
    assert {f["file_state"] for f in job.files} == {"CANCELED"}


async def test_cancel_of_an_ended_job_reads_304_in_the_body_and_keeps_the_real_end(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = fts_driver(tmp_path, fts3_server, source, source="src:data/a.bin")
    await driver.start()
    for _ in range(3):  # each GET moves the job on: ACTIVE, then FINISHED
        await driver.progress()
        await driver._poll()
    assert fts3_server.job(str(driver.job_id)).state == "FINISHED"

    assert await driver.cancel() is True  # nothing runs any more at FTS3

    outcome = await driver.wait()
    assert outcome.succeeded, "a job that had finished must not read as cancelled"
    assert fts3_server.job(str(driver.job_id)).state == "FINISHED"


async def test_cancel_that_fts_refuses_is_reported(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = await held_job(tmp_path, fts3_server, source)
    fts3_server.fail_next = [503, 503, 503]

    assert await driver.cancel() is False

    assert fts3_server.job(str(driver.job_id)).state != "CANCELED"


async def test_wrong_token_is_an_authentication_failure_without_the_token(
    tmp_path: Path,
    fts3_server: FtsServer,
    source: StorageServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-" + "x" * 20
    driver = fts_driver(tmp_path, fts3_server, source, token=wrong)

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.AUTHENTICATION_FAILED
    assert "FTS3 refused the job: 403" in raised.value.message  # no 403 body was recorded
    assert_no_secret([wrong, fts3_server.token, *source.secrets], raised.value.message, caplog.text)


async def test_fts_down_is_a_network_error_after_the_retries(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer, unused_port: int
) -> None:
    driver = fts_driver(tmp_path, fts3_server, source, endpoint=f"http://127.0.0.1:{unused_port}")

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.NETWORK_ERROR
    assert "could not be reached after 3 attempts" in raised.value.message


async def test_transient_errors_are_retried(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = fts_driver(tmp_path, fts3_server, source, request_retries=3)
    fts3_server.fail_next = [503, 503]

    outcome, _ = await run(driver)

    assert outcome.succeeded
    submits = [r for r in fts3_server.requests if r[:2] == ("POST", "/jobs")]
    assert len(submits) == 3
    assert len(fts3_server.jobs) == 1


async def test_a_submission_that_may_have_arrived_is_not_sent_twice(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = fts_driver(tmp_path, fts3_server, source, request_retries=3)
    fts3_server.fail_next = [502]  # a proxy's answer: FTS3 may have taken the job

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.REMOTE_FAILED
    assert "502 Bad Gateway" in raised.value.message
    assert len([r for r in fts3_server.requests if r[:2] == ("POST", "/jobs")]) == 1


async def test_fts_going_away_while_polling_ends_with_a_network_error(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = await held_job(tmp_path, fts3_server, source, request_retries=1)
    fts3_server.stop()

    outcome = await asyncio.wait_for(driver.wait(), 20)

    assert outcome.reason is Reason.NETWORK_ERROR
    assert outcome.result.remote_id == driver.job_id


async def test_an_unknown_job_answers_the_recorded_404_on_every_endpoint(
    fts3_server: FtsServer,
) -> None:
    """As captured from FTS3 3.13.4 (../shared/reference/fts3/captured-real2.txt)."""
    job_id = "00000000-0000-0000-0000-000000000000"
    recorded = {
        "job_id": job_id,
        "http_status": "404 Not Found",
        "http_message": f'No job with the id "{job_id}" has been found',
    }
    headers = {"Authorization": f"Bearer {fts3_server.token}"}
    async with httpx.AsyncClient(base_url=fts3_server.url, headers=headers) as http:
        for method, path in [("GET", ""), ("GET", "/files"), ("DELETE", "")]:
            response = await http.request(method, f"/jobs/{job_id}{path}")

            assert (response.status_code, response.json()) == (404, recorded), (method, path)


async def test_a_job_fts_no_longer_knows_is_not_found_with_its_message(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = await held_job(tmp_path, fts3_server, source)
    with fts3_server.lock:
        del fts3_server.jobs[str(driver.job_id)]

    outcome = await asyncio.wait_for(driver.wait(), 20)

    assert outcome.reason is Reason.NOT_FOUND
    assert f'No job with the id "{driver.job_id}" has been found' in outcome.message


async def test_missing_source_is_not_found(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    driver = fts_driver(tmp_path, fts3_server, source, source="src:nothing/here")

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.NOT_FOUND
    assert fts3_server.jobs == {}


def test_fts_needs_webdav_remotes_with_a_url(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="fts needs a webdav remote"):
        context(
            tmp_path,
            {},
            source="src:/etc/passwd",
            destination="dst:x",
            remotes=[
                {"name": "src", "type": "local"},
                {"name": "dst", "type": "webdav", "options": {"url": "https://d.example.org"}},
            ],
            driver="fts",
            fts={"endpoint": "https://fts.example.org:8446"},
        )


def test_fts_transfer_runs_in_a_job_on_the_cluster(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    fts3_server: FtsServer,
    source: StorageServer,
) -> None:
    run_operator(datatx_namespace)
    name = submit(
        datatx_namespace,
        cluster_spec(source, fts3_server.url),
        credential=fts3_server.token,
        remote_secrets=remote_secrets(source),
    )

    status = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=180)["status"]

    assert status["phase"] == "Finished", status
    (job_id,) = fts3_server.jobs
    assert status["result"]["remoteId"] == job_id
    assert status["result"]["files"] == 3
    assert fts3_server.job(job_id).state == "FINISHED"
    assert_no_secret_on_cluster(datatx_namespace, name, [fts3_server.token, *source.secrets])


def test_cancelling_the_transfer_cancels_the_fts_job_from_the_pod(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    fts3_server: FtsServer,
    source: StorageServer,
) -> None:
    fts3_server.hold = True
    run_operator(datatx_namespace)
    name = submit(
        datatx_namespace,
        cluster_spec(source, fts3_server.url, "src:data/a.bin"),
        credential=fts3_server.token,
        remote_secrets=remote_secrets(source),
    )
    datatx_namespace.wait_for(
        name, lambda body: bool(fts3_server.jobs) and body["status"]["phase"] == "InProgress"
    )
    (job_id,) = fts3_server.jobs

    datatx_namespace.cluster.kubectl(
        "patch", "datatransfers.datatx.io", name, "-n", datatx_namespace.name,
        "--type=merge", "-p", '{"spec": {"cancelRequested": true}}',
    )  # fmt: skip

    status = datatx_namespace.wait_phase(name, "Cancelled", "Failed", timeout=120)["status"]
    assert status["phase"] == "Cancelled", status
    assert fts3_server.job(job_id).state == "CANCELED"
    assert ("DELETE", f"/jobs/{job_id}") in [r[:2] for r in fts3_server.requests]


async def test_a_stop_that_comes_after_the_fts_job_ended_reports_the_real_end(
    tmp_path: Path, fts3_server: FtsServer, source: StorageServer
) -> None:
    """SIGTERM reaches the mover when FTS3 has already finished the job: the DELETE reads
    304 in the body, and the run is reported as the success it was, not as cancelled."""
    driver = fts_driver(
        tmp_path, fts3_server, source, source="src:data/a.bin", pollIntervalSeconds=60
    )
    stop = asyncio.Event()
    reported: list[Progress] = []

    async def record(progress: Progress) -> None:
        reported.append(progress)

    settings = MoverSettings(transfer="dt-test", POD_NAMESPACE="default")
    supervising = asyncio.create_task(supervise(driver, record, settings, stop))
    while driver.job_id is None:  # noqa: ASYNC110 (the driver sets it; no event to await)
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {fts3_server.token}"}) as http:
        while fts3_server.job(driver.job_id).state != "FINISHED":
            await http.get(f"{fts3_server.url}/jobs/{driver.job_id}")

    stop.set()
    outcome = await asyncio.wait_for(supervising, 30)

    assert outcome.reason is Reason.SUCCEEDED, outcome
    assert fts3_server.job(driver.job_id).state == "FINISHED"
