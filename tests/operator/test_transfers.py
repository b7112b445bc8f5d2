"""Transfers through the operator on the local cluster: real rclone Jobs, real servers."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from datatx_operator.models import RcloneOptions
from tests.operator.observe import metric, transfer_events
from tests.operator.submit import submit
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.storage import StorageServer


def _files(tree: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in tree.items()}


def _nested_folder(server: StorageServer, folder: str) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": os.urandom(300_000),
        "sub/deeper/c.bin": os.urandom(2_000_000),
        "empty-ish.txt": b"x",
    }
    for path, data in files.items():
        server.write(f"{folder}/{path}", data)
    return files


def test_folder_from_webdav_to_s3(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    sent = _nested_folder(webdav_server, "project")
    operator = run_operator(datatx_namespace)
    # Slow enough (about 2 s) for the operator to see the pod running.
    name = submit(
        datatx_namespace,
        webdav_server,
        "/project",
        s3_server,
        "/bucket/copy",
        rclone=RcloneOptions(bandwidth_limit="1M"),
    )

    body = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=180)

    status = body["status"]
    assert status["phase"] == "Finished", status
    assert _files(s3_server.tree("bucket/copy")) == _files(sent)
    assert status["result"]["files"] == len(sent)
    assert status["result"]["bytes"] == sum(len(data) for data in sent.values())
    assert status["result"]["checksum"]["verified"] is False
    assert "hash" in status["result"]["checksum"]["message"]
    assert status["progress"]["percent"] == 100
    assert status["attempts"] == 1
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Succeeded"] == "True"
    assert conditions["CredentialsDestroyed"] == "True"
    assert not datatx_namespace.exists("secret", f"{name}-credential")
    events = transfer_events(datatx_namespace, name, "Finished")
    assert [e["reason"] for e in events] == ["Starting", "Running", "Finished"]
    assert {e["type"] for e in events} == {"Normal"}
    rclone = {"driver": "rclone"}
    assert metric(operator, "datatx_runs_started_total", **rclone) == 1
    assert metric(operator, "datatx_bytes_moved_total", **rclone) == status["result"]["bytes"]
    ended = {**rclone, "phase": "Finished"}
    assert metric(operator, "datatx_transfers_ended_total", **ended) == 1
    assert metric(operator, "datatx_transfer_duration_seconds_count", **ended) == 1
    assert metric(operator, "datatx_transfers", phase="Finished") == 1


def test_folder_from_wsgidav_to_sftp_and_a_single_file_with_a_common_hash(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    wsgidav_server: StorageServer,
    s3_server: StorageServer,
    sftp_server: StorageServer,
) -> None:
    sent = _nested_folder(wsgidav_server, "in")
    big = os.urandom(5_000_000)
    s3_server.write("bucket/single/big.bin", big)
    run_operator(datatx_namespace)
    folder = submit(datatx_namespace, wsgidav_server, "/in", sftp_server, "/out")
    single = submit(
        datatx_namespace, s3_server, "/bucket/single/big.bin", sftp_server, "/one/big.bin"
    )

    folder_status = datatx_namespace.wait_phase(folder, "Finished", "Failed", timeout=180)["status"]
    single_status = datatx_namespace.wait_phase(single, "Finished", "Failed", timeout=180)["status"]

    assert folder_status["phase"] == "Finished", folder_status
    assert _files(sftp_server.tree("out")) == _files(sent)
    assert single_status["phase"] == "Finished", single_status
    assert sftp_server.read("one/big.bin") == big
    assert single_status["result"]["checksum"] == {
        "verified": True,
        "algorithm": "md5",
        "message": single_status["result"]["checksum"]["message"],
    }


def test_a_broken_endpoint_fails_with_a_reason_after_the_retries(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    sftp_server: StorageServer,
    unused_port: int,
) -> None:
    webdav_server.write("data/a.txt", b"hello")
    broken = StorageServer(
        kind=sftp_server.kind,
        port=unused_port,
        root=sftp_server.root,
        options={**sftp_server.options, "port": str(unused_port)},
        secret_options=sftp_server.secret_options,
        credential=sftp_server.credential,
    )
    operator = run_operator(datatx_namespace)
    name = submit(datatx_namespace, webdav_server, "/data", broken, "/x", retries=1)

    status = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=240)["status"]

    assert status["phase"] == "Failed"
    assert status["reason"] == "NetworkError"
    assert "connection refused" in status["message"].lower()
    assert status["attempts"] == 2
    assert datatx_namespace.exists("secret", f"{name}-credential"), "kept for a retry"
    events = transfer_events(datatx_namespace, name, "NetworkError")
    assert events[0]["reason"] == "Starting"
    assert (events[-1]["reason"], events[-1]["type"]) == ("NetworkError", "Warning")
    assert events[-1]["message"] == status["message"]
    failed = {"driver": "rclone", "phase": "Failed"}
    assert metric(operator, "datatx_transfers_ended_total", **failed) == 1
    assert metric(operator, "datatx_transfer_duration_seconds_count", **failed) == 1
    assert metric(operator, "datatx_bytes_moved_total", driver="rclone") == 0


def test_local_remotes_read_the_sites_local_volume_only(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    s3_server: StorageServer,
    tmp_path: Path,
) -> None:
    volume = tmp_path / "site-volume"
    (volume / "instrument").mkdir(parents=True)
    (volume / "instrument" / "run.dat").write_bytes(b"detector counts")
    volume.chmod(0o755)
    run_operator(
        datatx_namespace,
        DATATX_LOCAL_VOLUME=json.dumps({"hostPath": {"path": str(volume), "type": "Directory"}}),
    )
    local = StorageServer("local", 0, volume, {}, {}, "")
    name = submit(datatx_namespace, local, "/instrument", s3_server, "/bucket/instrument")

    status = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=180)["status"]

    assert status["phase"] == "Finished", status
    assert s3_server.read("bucket/instrument/run.dat") == b"detector counts"


def test_local_remotes_fail_clearly_without_a_site_volume(
    datatx_namespace: Namespace, run_operator: OperatorFactory, s3_server: StorageServer
) -> None:
    run_operator(datatx_namespace)
    local = StorageServer("local", 0, Path("/"), {}, {}, "")
    name = submit(datatx_namespace, local, "/etc", s3_server, "/bucket/etc", retries=3)

    status = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=180)["status"]

    assert status["phase"] == "Failed"
    assert status["reason"] == "InvalidRequest"
    assert "no local volume" in status["message"]
    assert status["attempts"] == 1, "a permanent failure is not retried"
    assert not s3_server.path("bucket/etc").exists()
