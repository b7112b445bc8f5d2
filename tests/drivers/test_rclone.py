"""The rclone driver moving real bytes between real servers of different kinds
(tests/servers/storage.py): rclone serve webdav|s3|sftp and WsgiDAV."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from datatx_operator import api
from datatx_operator.drivers.base import DriverError, Reason
from datatx_operator.drivers.rclone import RcloneDriver
from datatx_operator.drivers.rclone_cli import find_rclone
from datatx_operator.models import Progress, Remote
from tests.drivers.drive import assert_no_secret, context, run
from tests.servers.storage import StorageServer

pytestmark = pytest.mark.timeout(180)

NESTED = {
    "a.txt": b"hello datatx\n",
    "sub/b.txt": b"nested file\n",
    "sub/deeper/c.bin": os.urandom(300_000),
}
MIB = 1024 * 1024


def source_remote(
    server: StorageServer, name: str = "src"
) -> tuple[dict[str, Any], dict[str, str]]:
    """The server as a source: its secret options go to the remotes Secret."""
    remote = {
        "name": name,
        "type": server.kind,
        "options": server.options,
        "secretOptions": list(server.secret_options),
    }
    return remote, {f"{name}.{option}": value for option, value in server.secret_options.items()}


def destination_remote(server: StorageServer, name: str = "dst") -> dict[str, Any]:
    """The server as a destination: its user and password come as the credential."""
    options = {key: value for key, value in server.options.items() if key != "user"}
    return {"name": name, "type": server.kind, "options": options}


def rclone_driver(
    tmp_path: Path,
    source: StorageServer,
    source_path: str,
    destination: StorageServer,
    destination_path: str,
    *,
    credential: str | None = None,
    source_secrets: dict[str, str] | None = None,
    destination_options: dict[str, str] | None = None,
    **rclone: Any,
) -> RcloneDriver:
    """A run from `source` to `destination`; the overrides spoil what a test needs spoilt."""
    src, secrets = source_remote(source)
    secrets.update(source_secrets or {})
    secrets["credential"] = destination.credential if credential is None else credential
    dst = destination_remote(destination)
    dst["options"] = {**dst["options"], **(destination_options or {})}
    return RcloneDriver(
        context(
            tmp_path / "work",
            secrets,
            source=f"src:{source_path}",
            destination=f"dst:{destination_path}",
            remotes=[src, dst],
            rclone=rclone or None,
        )
    )


def fill(server: StorageServer, folder: str, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        server.write(f"{folder}/{name}", data)


def assert_progress_sane(samples: list[Progress], total: int) -> None:
    figures = [sample.bytes for sample in samples]
    assert figures == sorted(figures), "progress never goes back"
    assert samples[-1].bytes == samples[-1].total_bytes == total
    assert samples[-1].percent == 100


async def test_webdav_folder_to_s3_copies_nested_files(
    tmp_path: Path, webdav_server: StorageServer, s3_server: StorageServer
) -> None:
    fill(webdav_server, "projects/run1", NESTED)
    driver = rclone_driver(tmp_path, webdav_server, "projects/run1", s3_server, "bucket/in")

    outcome, samples = await run(driver)

    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert s3_server.tree("bucket/in") == NESTED
    assert outcome.result.files == len(NESTED)
    assert outcome.result.bytes == sum(map(len, NESTED.values()))
    assert outcome.result.errors == 0
    # rclone's WebDAV server exposes no hash: said so, not claimed.
    checksum = outcome.result.checksum
    assert checksum is not None
    assert not checksum.verified
    assert "source 'src' (webdav" in checksum.message
    assert "no hashes to compare" in checksum.message
    assert checksum.message in outcome.message
    assert_progress_sane(samples, outcome.result.bytes)


async def test_wsgidav_folder_to_sftp(
    tmp_path: Path, wsgidav_server: StorageServer, sftp_server: StorageServer
) -> None:
    fill(wsgidav_server, "share", NESTED)
    driver = rclone_driver(tmp_path, wsgidav_server, "share", sftp_server, "landing/share")

    outcome, _ = await run(driver)

    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert sftp_server.tree("landing/share") == NESTED
    assert outcome.result.checksum is not None
    assert not outcome.result.checksum.verified


async def test_s3_folder_to_sftp_verifies_md5(
    tmp_path: Path, s3_server: StorageServer, sftp_server: StorageServer
) -> None:
    fill(s3_server, "bucket/data", NESTED)
    driver = rclone_driver(tmp_path, s3_server, "bucket/data", sftp_server, "copy")

    outcome, _ = await run(driver)

    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert sftp_server.tree("copy") == NESTED
    checksum = outcome.result.checksum
    assert checksum is not None
    assert checksum.verified
    assert checksum.algorithm == "md5"
    assert "md5 checksums verified" in outcome.message


async def test_single_file_s3_to_sftp_verifies_md5(
    tmp_path: Path, s3_server: StorageServer, sftp_server: StorageServer
) -> None:
    data = os.urandom(2 * MIB + 7)
    s3_server.write("bucket/results/run.h5", data)
    s3_server.write("bucket/results/other.txt", b"not asked for\n")
    driver = rclone_driver(
        tmp_path, s3_server, "bucket/results/run.h5", sftp_server, "in/run-42.h5"
    )

    outcome, samples = await run(driver)

    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert sftp_server.tree("in") == {"run-42.h5": data}
    assert outcome.result.files == 1
    assert outcome.result.bytes == len(data)
    checksum = outcome.result.checksum
    assert checksum is not None
    assert checksum.verified
    assert checksum.algorithm == "md5"
    assert_progress_sane(samples, len(data))


async def test_single_file_into_a_folder_keeps_its_name(
    tmp_path: Path, sftp_server: StorageServer, webdav_server: StorageServer
) -> None:
    sftp_server.write("out/table.csv", b"a,b\n1,2\n")
    driver = rclone_driver(tmp_path, sftp_server, "out/table.csv", webdav_server, "inbox/")

    outcome, _ = await run(driver)

    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert webdav_server.tree("inbox") == {"table.csv": b"a,b\n1,2\n"}


async def test_bearer_token_webdav_both_ways(
    tmp_path: Path, wsgidav_bearer_server: StorageServer, s3_server: StorageServer
) -> None:
    fill(s3_server, "bucket/exp", NESTED)
    there = rclone_driver(tmp_path / "there", s3_server, "bucket/exp", wsgidav_bearer_server, "exp")
    outcome, _ = await run(there)
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert wsgidav_bearer_server.tree("exp") == NESTED

    back = rclone_driver(tmp_path / "back", wsgidav_bearer_server, "exp", s3_server, "bucket/back")
    outcome, _ = await run(back)
    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert s3_server.tree("bucket/back") == NESTED


async def test_owncloud_vendor_without_server_hashes_is_not_called_verified(
    tmp_path: Path, s3_server: StorageServer, wsgidav_server: StorageServer
) -> None:
    """rclone believes an ownCloud server has md5; WsgiDAV returns none: say so."""
    fill(s3_server, "bucket/oc", NESTED)
    driver = rclone_driver(
        tmp_path,
        s3_server,
        "bucket/oc",
        wsgidav_server,
        "oc",
        destination_options={"vendor": "owncloud"},
    )

    outcome, _ = await run(driver)

    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert wsgidav_server.tree("oc") == NESTED
    checksum = outcome.result.checksum
    assert checksum is not None
    assert not checksum.verified
    assert checksum.algorithm == "md5"
    assert "no md5" in checksum.message


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        ({"url": "http://127.0.0.1:1/remote.php/webdav/"}, False),
        ({"url": "http://127.0.0.1:1/"}, False),
        ({"url": "http://127.0.0.1:1/remote.php/dav/files/alice/"}, True),
        ({"url": "http://127.0.0.1:1/nextcloud/remote.php/dav/files/alice"}, True),
        ({"url": "http://127.0.0.1:1/remote.php/webdav/", "nextcloud_chunk_size": "0"}, True),
    ],
)
def test_nextcloud_urls_are_refused_when_rclone_would_refuse_every_run(
    options: dict[str, str], accepted: bool
) -> None:
    """A url rclone's nextcloud vendor cannot use is refused at request time, not retried."""
    options = {"vendor": "nextcloud", **options}
    remote = {"name": "dst", "type": "webdav", "options": options}
    if accepted:
        Remote.model_validate(remote)
    else:
        with pytest.raises(ValidationError, match=r"must end in /remote\.php/dav/files/USER"):
            Remote.model_validate(remote)

    flags = [f"--webdav-{key.replace('_', '-')}={value}" for key, value in options.items()]
    rclone = subprocess.run(
        [find_rclone(), "lsjson", "--stat", ":webdav:", "--low-level-retries=1", *flags],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rclone.returncode != 0, "nothing listens there"
    assert ("the remote url looks incorrect" in rclone.stderr) is not accepted, rclone.stderr


async def test_wrong_password_is_authentication_failed(
    tmp_path: Path, s3_server: StorageServer, webdav_server: StorageServer
) -> None:
    fill(s3_server, "bucket/x", NESTED)
    user = webdav_server.options["user"]
    wrong = f"{user}:not-the-password"
    driver = rclone_driver(tmp_path, s3_server, "bucket/x", webdav_server, "x", credential=wrong)

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.AUTHENTICATION_FAILED
    assert raised.value.message.startswith(
        "authentication failed at the destination 'dst' (webdav at 127.0.0.1:"
    )
    assert "401" in raised.value.message
    assert_no_secret(["not-the-password", *s3_server.secrets], raised.value.message)
    assert not webdav_server.path("x").exists()


async def test_wrong_s3_secret_at_the_source_is_authentication_failed(
    tmp_path: Path, s3_server: StorageServer, sftp_server: StorageServer
) -> None:
    fill(s3_server, "bucket/x", NESTED)
    wrong = {"src.secret_access_key": "wrong-secret-key"}
    driver = rclone_driver(tmp_path, s3_server, "bucket/x", sftp_server, "x", source_secrets=wrong)

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.AUTHENTICATION_FAILED
    assert "at the source 'src' (s3" in raised.value.message
    assert_no_secret(["wrong-secret-key", *sftp_server.secrets], raised.value.message)


async def test_missing_source_is_not_found(
    tmp_path: Path, webdav_server: StorageServer, sftp_server: StorageServer
) -> None:
    driver = rclone_driver(tmp_path, webdav_server, "no/such/folder", sftp_server, "x")

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.NOT_FOUND
    assert raised.value.message.startswith("not found at the source 'src' (webdav")


async def test_missing_s3_prefix_is_not_found(
    tmp_path: Path, s3_server: StorageServer, sftp_server: StorageServer
) -> None:
    """S3 has no folders: a missing prefix lists as empty, and that is said."""
    driver = rclone_driver(tmp_path, s3_server, "bucket/nothing-here", sftp_server, "x")

    outcome, _ = await run(driver)

    assert outcome.reason is Reason.NOT_FOUND
    assert "has no files at 'src:bucket/nothing-here'" in outcome.message


async def test_server_down_is_network_error(
    tmp_path: Path, s3_server: StorageServer, webdav_server: StorageServer, unused_port: int
) -> None:
    fill(s3_server, "bucket/x", NESTED)
    down = {"url": f"http://127.0.0.1:{unused_port}/"}
    driver = rclone_driver(
        tmp_path, s3_server, "bucket/x", webdav_server, "x", destination_options=down
    )

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.NETWORK_ERROR
    assert raised.value.message.startswith(
        f"cannot reach the server at the destination 'dst' (webdav at 127.0.0.1:{unused_port})"
    )
    assert "connection refused" in raised.value.message


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("ssh", "sh -c 'cat /etc/passwd'", "option 'ssh' of remote 'dst' (sftp) is not allowed"),
        ("key_file", "/var/run/secrets/token", "option 'key_file' of remote 'dst' (sftp) is not"),
        ("no_such_option", "1", "remote 'dst' (sftp) has no option 'no_such_option'"),
        ("host_keys", "x\n[evil]\ntype = local", "holds a line break"),
        ("pass", "hunter2-in-the-spec", "option 'pass' of remote 'dst' is a secret"),
        ("key_pem", "-----BEGIN KEY-----", "option 'key_pem' of remote 'dst' is a secret"),
    ],
)
async def test_dangerous_or_unknown_options_are_refused(
    tmp_path: Path,
    s3_server: StorageServer,
    sftp_server: StorageServer,
    option: str,
    value: str,
    complaint: str,
) -> None:
    fill(s3_server, "bucket/x", NESTED)
    driver = rclone_driver(
        tmp_path, s3_server, "bucket/x", sftp_server, "x", destination_options={option: value}
    )

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.INVALID_REQUEST
    assert complaint in raised.value.message
    assert value not in raised.value.message
    assert not sftp_server.path("x").exists()


async def test_malformed_credential_is_refused_without_echoing_it(
    tmp_path: Path, s3_server: StorageServer, sftp_server: StorageServer
) -> None:
    driver = rclone_driver(tmp_path, sftp_server, "x", s3_server, "bucket/x", credential="oops")

    with pytest.raises(DriverError) as raised:
        await driver.start()

    assert raised.value.reason is Reason.INVALID_REQUEST
    assert "must be access_key_id:secret_access_key" in raised.value.message
    assert "oops" not in raised.value.message


async def slow_copy(
    tmp_path: Path, source: StorageServer, destination: StorageServer, size: int
) -> RcloneDriver:
    """A started copy of one big file at 2 MiB/s (plus a small one)."""
    source.write("bucket/big/huge.bin", os.urandom(size))
    source.write("bucket/big/small.txt", b"small\n")
    driver = rclone_driver(
        tmp_path, source, "bucket/big", destination, "big", bandwidth_limit="2M", transfers=1
    )
    await driver.start()
    return driver


def rclone_processes(workdir: Path) -> list[int]:
    """Our driver's rclone processes: the ones reading the config in its workdir."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(workdir).encode() in cmdline:
                found.append(int(entry.name))
    return found


def environment_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:  # already gone
        return []


def every_command_line() -> str:
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, UnicodeDecodeError):
                continue
    return "\n".join(lines)


async def test_progress_grows_during_a_large_copy(
    tmp_path: Path, s3_server: StorageServer, sftp_server: StorageServer
) -> None:
    driver = await slow_copy(tmp_path, s3_server, sftp_server, 10 * MIB)
    samples: list[Progress] = []
    waiting = asyncio.create_task(driver.wait())
    while not waiting.done():
        samples.append(await driver.progress())
        await asyncio.wait([waiting], timeout=0.5)
    outcome = waiting.result()

    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    moving = [s for s in samples if 0 < s.bytes < s.total_bytes]
    assert len({s.bytes for s in moving}) >= 3, "several distinct figures while copying"
    assert all(s.total_bytes == 10 * MIB + 6 for s in moving)
    assert all(s.total_files == 2 for s in moving)
    assert any(s.rate_bytes_per_second > 0 and s.eta_seconds is not None for s in moving)
    assert [s.percent for s in moving] == sorted(s.percent for s in moving)
    assert outcome.result.bytes == 10 * MIB + 6
    assert outcome.result.files == 2


async def test_cancel_stops_rclone_and_leaves_no_partial_file(
    tmp_path: Path, s3_server: StorageServer, sftp_server: StorageServer
) -> None:
    driver = await slow_copy(tmp_path, s3_server, sftp_server, 40 * MIB)
    waiting = asyncio.create_task(driver.wait())
    for _ in range(100):  # until bytes flow
        if (await driver.progress()).bytes > 0:
            break
        await asyncio.sleep(0.1)
    assert rclone_processes(tmp_path / "work")

    assert await driver.cancel() is True

    outcome = await waiting
    assert outcome.reason is Reason.CANCELLED
    assert rclone_processes(tmp_path / "work") == []
    arrived = sftp_server.tree("big") if sftp_server.path("big").exists() else {}
    assert "huge.bin" not in arrived
    assert not [name for name in arrived if "partial" in name]


async def test_no_secret_in_argv_env_config_outcome_or_logs(
    tmp_path: Path,
    s3_server: StorageServer,
    sftp_server: StorageServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    used = [*s3_server.secrets, *sftp_server.secrets]
    driver = await slow_copy(tmp_path, s3_server, sftp_server, 6 * MIB)
    workdir = tmp_path / "work"
    config = workdir / "rclone.conf"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    sftp_password = sftp_server.secret_options["pass"]
    assert sftp_password not in config.read_text(), "passwords are obscured"

    waiting = asyncio.create_task(driver.wait())
    seen: list[int] = []
    while not waiting.done():
        for pid in rclone_processes(workdir):
            environ = environment_of(pid)
            seen.append(pid)
            assert_no_secret(used, *environ)
            assert not [v for v in environ if v.startswith(("RCLONE_", "AWS_"))]
        assert_no_secret(used, every_command_line())
        await asyncio.wait([waiting], timeout=0.3)
    outcome = waiting.result()

    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert seen, "the copy was watched while it ran"
    outcome_json = json.dumps(
        {"reason": outcome.reason, "message": outcome.message, "result": outcome.result.dump()}
    )
    assert_no_secret(used, outcome_json, caplog.text)


def local_driver(tmp_path: Path, destination: StorageServer, source_path: str) -> RcloneDriver:
    return RcloneDriver(
        context(
            tmp_path / "work",
            {"credential": destination.credential},
            source=f"src:{source_path}",
            destination="dst:bucket/from-local",
            remotes=[{"name": "src", "type": "local"}, destination_remote(destination)],
        )
    )


async def test_local_remotes_are_confined_to_the_sites_local_root(
    tmp_path: Path, s3_server: StorageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "site-volume"
    (root / "results").mkdir(parents=True)
    (root / "results" / "table.csv").write_bytes(b"a,b\n1,2\n")
    (root / "results" / "escape").symlink_to("/etc")
    monkeypatch.setenv(api.LOCAL_ROOT_ENV, str(root))

    outcome, _ = await run(local_driver(tmp_path, s3_server, "/results"))

    assert outcome.reason is Reason.SUCCEEDED, outcome.message
    assert s3_server.tree("bucket/from-local") == {"table.csv": b"a,b\n1,2\n"}, (
        "paths resolve below the root and symlinks out of it are not followed"
    )


async def test_local_remotes_are_refused_where_the_site_has_no_local_volume(
    tmp_path: Path, s3_server: StorageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(api.LOCAL_ROOT_ENV, raising=False)

    with pytest.raises(DriverError) as refused:
        await local_driver(tmp_path, s3_server, "/etc").start()

    assert refused.value.reason is Reason.INVALID_REQUEST
    assert "no local volume" in refused.value.message
    assert not s3_server.path("bucket/from-local").exists()
