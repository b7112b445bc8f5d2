"""The FileSender driver against the FileSender test server (tests/servers/filesender.py,
which follows the reference: signed requests checked, chunks checked and stored)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any

import pydantic
import pytest

from datatx_operator import api
from datatx_operator.drivers.base import DriverError, Reason
from datatx_operator.drivers.filesender import FileSenderDriver, sign
from tests.drivers.drive import (
    assert_no_secret,
    assert_no_secret_on_cluster,
    context,
    remote_secrets,
    run,
    submit,
)
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.filesender import FileSenderServer
from tests.servers.storage import StorageServer

CHUNK = 64 * 1024
FILES = {
    "big.bin": os.urandom(3 * CHUNK + 123),
    "exact.bin": os.urandom(CHUNK),
    "small.txt": b"hello FileSender\n",
}


def filesender_driver(
    tmp_path: Path,
    server: FileSenderServer,
    source: str,
    remote: dict[str, object],
    *,
    secrets: dict[str, str] | None = None,
    secret: str | None = None,
    endpoint: str | None = None,
    **options: object,
) -> FileSenderDriver:
    options.setdefault("request_retries", 2)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    driver = FileSenderDriver(
        context(
            work,
            {"credential": secret or server.secret, **(secrets or {})},
            source=source,
            destination="fs:/",
            remotes=[remote, {"name": "fs", "type": "filesender"}],
            driver="filesender",
            fileSender={
                "endpoint": endpoint or server.url,
                "remoteUser": server.user,
                "recipients": ["bob@example.org", "carol@example.org"],
                "subject": "run 42",
                **options,
            },
        )
    )
    driver.backoff_seconds = 0.05
    return driver


def cluster_spec(server: FileSenderServer, webdav: StorageServer) -> dict[str, object]:
    """The spec of a FileSender transfer of `src:share` on `webdav`, as the bridge submits it."""
    return {
        "source": "src:share",
        "destination": "fs:/",
        "remotes": [
            {
                "name": "src",
                "type": "webdav",
                "options": webdav.options,
                "secretOptions": list(webdav.secret_options),
            },
            {"name": "fs", "type": "filesender"},
        ],
        "driver": "filesender",
        "fileSender": {
            "endpoint": server.url,
            "remoteUser": server.user,
            "recipients": ["bob@example.org"],
        },
    }


def write_share(webdav: StorageServer) -> StorageServer:
    """The WebDAV server, holding FILES under share/."""
    for name, data in FILES.items():
        webdav.write(f"share/{name}", data)
    return webdav


@pytest.fixture
def local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The site's local volume, as the operator's Job would mount it."""
    root = tmp_path / "local-root"
    root.mkdir()
    monkeypatch.setenv(api.LOCAL_ROOT_ENV, str(root))
    return root


@pytest.fixture
def local_source(local_root: Path) -> Path:
    folder = local_root / "data"
    for name, data in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def local(tmp_path: Path, server: FileSenderServer, folder: str, **kw: Any) -> FileSenderDriver:
    """A driver reading `src:/<folder>` from the local root."""
    return filesender_driver(
        tmp_path, server, f"src:/{folder}", {"name": "src", "type": "local"}, **kw
    )


def uploaded(server: FileSenderServer, transfer_id: int | None) -> dict[str, bytes]:
    transfer = server.transfer(int(str(transfer_id)))
    return {f.name: f.data() for f in transfer.files}


async def test_local_files_are_uploaded_in_chunks_and_the_transfer_completes(
    tmp_path: Path, filesender_server: FileSenderServer, local_source: Path
) -> None:
    driver = local(tmp_path, filesender_server, "data")

    outcome, samples = await run(driver, every=0.001)

    assert outcome.succeeded, outcome.message
    assert uploaded(filesender_server, driver.transfer_id) == FILES
    transfer = filesender_server.transfer(int(str(driver.transfer_id)))
    assert transfer.status == "available"
    assert transfer.body["recipients"] == ["bob@example.org", "carol@example.org"]
    total = sum(len(data) for data in FILES.values())
    assert (outcome.result.files, outcome.result.bytes) == (3, total)
    assert outcome.result.remote_id == str(driver.transfer_id)
    sent = [sample.bytes for sample in samples if sample.total_bytes]
    assert sent == sorted(sent), "progress by bytes only grows"
    assert any(0 < done < total for done in sent), "progress is reported between chunks"
    assert samples[-1].bytes == samples[-1].total_bytes == total
    assert samples[-1].percent == 100
    assert filesender_server.chunk_attempts == 4 + 1 + 1


async def test_files_read_through_rclone_from_webdav(
    tmp_path: Path, filesender_server: FileSenderServer, webdav_server: StorageServer
) -> None:
    write_share(webdav_server)
    driver = filesender_driver(
        tmp_path,
        filesender_server,
        "src:share",
        {
            "name": "src",
            "type": "webdav",
            "options": webdav_server.options,
            "secretOptions": list(webdav_server.secret_options),
        },
        secrets=remote_secrets(webdav_server),
    )

    outcome, _ = await run(driver)

    assert outcome.succeeded, outcome.message
    assert uploaded(filesender_server, driver.transfer_id) == FILES


async def test_failed_chunks_are_retried(
    tmp_path: Path, filesender_server: FileSenderServer, local_source: Path
) -> None:
    filesender_server.fail_chunks = ["503", "drop", "", "503"]
    driver = local(tmp_path, filesender_server, "data", request_retries=2)

    outcome, _ = await run(driver)

    assert outcome.succeeded, outcome.message
    assert uploaded(filesender_server, driver.transfer_id) == FILES
    assert filesender_server.chunk_attempts == 6 + 3


async def test_a_chunk_failing_beyond_the_retries_fails_and_leaves_no_transfer(
    tmp_path: Path, filesender_server: FileSenderServer, local_source: Path
) -> None:
    filesender_server.fail_chunks = ["503", "503", "503"]
    driver = local(tmp_path, filesender_server, "data", request_retries=2)

    outcome, _ = await run(driver)

    assert outcome.reason is Reason.REMOTE_FAILED
    assert "refused a chunk of big.bin at offset 0 (503 injected failure)" in outcome.message
    assert filesender_server.deleted == [driver.transfer_id]


async def test_wrong_secret_fails_the_signature_check_without_showing_the_secret(
    tmp_path: Path,
    filesender_server: FileSenderServer,
    local_source: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "0123456789abcdef" * 3
    driver = local(tmp_path, filesender_server, "data", secret=wrong)

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.AUTHENTICATION_FAILED
    assert "auth_remote_signature_check_failed" in raised.value.message
    assert filesender_server.transfers == {}
    assert_no_secret([wrong, filesender_server.secret], raised.value.message, caplog.text)


async def test_signature_older_than_15_seconds_is_refused(
    tmp_path: Path, filesender_server: FileSenderServer, local_source: Path
) -> None:
    filesender_server.clock_offset = 20
    driver = local(tmp_path, filesender_server, "data")

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.AUTHENTICATION_FAILED
    assert "auth_remote_too_late" in raised.value.message
    assert "clocks" in raised.value.message


async def test_filesender_down_is_a_network_error(
    tmp_path: Path, filesender_server: FileSenderServer, local_source: Path, unused_port: int
) -> None:
    driver = local(
        tmp_path,
        filesender_server,
        "data",
        endpoint=f"http://127.0.0.1:{unused_port}/rest.php",
    )

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.NETWORK_ERROR
    assert "FileSender at 127.0.0.1 could not be reached after 3 attempts" in raised.value.message


async def test_missing_source_is_not_found(
    tmp_path: Path, filesender_server: FileSenderServer, local_root: Path
) -> None:
    driver = local(tmp_path, filesender_server, "nothing")

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.NOT_FOUND


async def test_cancel_deletes_the_remote_transfer(
    tmp_path: Path, filesender_server: FileSenderServer, local_source: Path
) -> None:
    (local_source / "large.bin").write_bytes(os.urandom(160 * CHUNK))
    driver = local(tmp_path, filesender_server, "data")
    await driver.start()
    waiting = asyncio.create_task(driver.wait())
    for _ in range(5000):  # until the first chunks went out
        if (await driver.progress()).bytes:
            break
        await asyncio.sleep(0.001)

    assert await driver.cancel() is True

    outcome = await asyncio.wait_for(waiting, 10)
    assert outcome.reason is Reason.CANCELLED
    assert filesender_server.deleted == [driver.transfer_id]
    assert filesender_server.transfers == {}


async def test_the_transfer_object_has_no_status_field_as_in_the_reference(
    tmp_path: Path, filesender_server: FileSenderServer, local_source: Path
) -> None:
    """The driver counts progress itself: FileSender's GET /transfer/{id} tells no status."""
    driver = local(tmp_path, filesender_server, "data")
    await driver.start()

    response = await driver._call("GET", f"/transfer/{driver.transfer_id}")

    assert response.status_code == 200
    assert response.json()["id"] == driver.transfer_id
    assert "status" not in response.json()
    await driver.cancel()


def test_signature_follows_the_reference() -> None:
    body = b'{"complete":true}'
    expected = hmac.new(
        b"s3cret",
        b"put&fs.example.org/rest.php/file/7?remote_user=alice&timestamp=1700000000&" + body,
        hashlib.sha1,
    ).hexdigest()

    signature = sign(
        "s3cret",
        "PUT",
        "fs.example.org",
        "/rest.php/file/7",
        {"timestamp": "1700000000", "remote_user": "alice"},
        body,
    )

    assert signature == expected


def test_filesender_needs_a_filesender_destination(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="filesender remote as destination"):
        context(
            tmp_path,
            {},
            source="src:/data",
            destination="dst:/x",
            remotes=[{"name": "src", "type": "local"}, {"name": "dst", "type": "webdav"}],
            driver="filesender",
            fileSender={
                "endpoint": "https://fs.example.org/rest.php",
                "remoteUser": "alice",
                "recipients": ["bob@example.org"],
            },
        )


def test_filesender_transfer_runs_in_a_job_on_the_cluster(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    filesender_server: FileSenderServer,
    webdav_server: StorageServer,
) -> None:
    run_operator(datatx_namespace)
    name = submit(
        datatx_namespace,
        cluster_spec(filesender_server, write_share(webdav_server)),
        credential=filesender_server.secret,
        remote_secrets=remote_secrets(webdav_server),
    )

    status = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=180)["status"]

    assert status["phase"] == "Finished", status
    (transfer_id,) = filesender_server.transfers
    assert status["result"]["remoteId"] == str(transfer_id)
    assert uploaded(filesender_server, transfer_id) == FILES
    assert filesender_server.transfer(transfer_id).status == "available"
    secrets = [filesender_server.secret, *webdav_server.secrets]
    assert_no_secret_on_cluster(datatx_namespace, name, secrets)
