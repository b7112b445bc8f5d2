"""`datatx-mover` as a process, the way its Job runs it: its own ServiceAccount's token (so
the chart's RBAC holds), the Secrets laid out as Kubernetes mounts them, a real transfer
between real servers; the status and the termination message are what the operator reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from datatx_operator import api
from datatx_operator.drivers.base import ExitCode
from datatx_operator.models import RcloneOptions
from tests.drivers.drive import assert_no_secret
from tests.operator.submit import submit
from tests.servers.datatx import Namespace
from tests.servers.storage import StorageServer

pytestmark = pytest.mark.timeout(300)

MOVER = str(Path(sys.executable).parent / "datatx-mover")
NESTED = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(200_000), "sub/deeper/c.txt": b"c\n"}


def mount_secret(directory: Path, values: dict[str, str]) -> Path:
    """Files as the kubelet writes a Secret volume: `..data` -> timestamped dir, key links."""
    data = directory / "..2026_12_03_12_00_00.000000001"
    data.mkdir(parents=True)
    (directory / "..data").symlink_to(data.name)
    for key, value in values.items():
        (data / key).write_text(value)
        (directory / key).symlink_to(f"..data/{key}")
    return directory


class Mover:
    """One `datatx-mover --driver rclone` process for a transfer."""

    def __init__(
        self, namespace: Namespace, name: str, tmp_path: Path, secrets: dict[str, str]
    ) -> None:
        self.termination_log = tmp_path / "termination-log"
        self.stderr = tmp_path / "mover.log"
        remotes = {k: v for k, v in secrets.items() if k != api.SECRET_KEY_CREDENTIAL}
        credential = {k: v for k, v in secrets.items() if k == api.SECRET_KEY_CREDENTIAL}
        self.env = {
            "PATH": os.environ["PATH"],
            "KUBECONFIG": str(namespace.kubeconfig_for("mover", tmp_path)),
            "DATATX_TRANSFER": name,
            "DATATX_JOB": api.job_name(name, 0),
            "POD_NAMESPACE": namespace.name,
            "POD_NAME": f"{api.job_name(name, 0)}-abcde",
            "DATATX_REMOTES_DIR": str(mount_secret(tmp_path / "remotes", remotes)),
            "DATATX_CREDENTIAL_DIR": str(mount_secret(tmp_path / "credential", credential)),
            "DATATX_TERMINATION_LOG": str(self.termination_log),
            "DATATX_WORKDIR": str(tmp_path),
        }
        with self.stderr.open("wb") as log:
            self.process = subprocess.Popen(
                [MOVER, "--driver", "rclone"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def wait(self, timeout: float = 120) -> int:
        return self.process.wait(timeout)

    def report(self) -> dict[str, Any]:
        return dict(json.loads(self.termination_log.read_text()))

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.read_text().splitlines()]

    def argv_and_env(self) -> str:
        proc = Path(f"/proc/{self.process.pid}")
        return (proc / "cmdline").read_text() + (proc / "environ").read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def transfer_secrets(source: StorageServer, destination: StorageServer) -> dict[str, str]:
    secrets = {api.remote_secret_key("src", k): v for k, v in source.secret_options.items()}
    return {**secrets, api.SECRET_KEY_CREDENTIAL: destination.credential}


def test_mover_copies_and_reports_in_the_status(
    datatx_namespace: Namespace,
    tmp_path: Path,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    for path, data in NESTED.items():
        webdav_server.write(f"project/{path}", data)
    name = submit(datatx_namespace, webdav_server, "/project", s3_server, "/bucket/copy")
    mover = Mover(datatx_namespace, name, tmp_path, transfer_secrets(webdav_server, s3_server))
    try:
        code = mover.wait()
    finally:
        mover.stop()

    assert code == ExitCode.OK, mover.stderr.read_text()
    assert s3_server.tree("bucket/copy") == NESTED
    status = datatx_namespace.get(name)["status"]
    assert status["progress"]["percent"] == 100
    assert status["progress"]["bytes"] == sum(map(len, NESTED.values()))
    last_run = status["lastRun"]
    assert last_run["job"] == api.job_name(name, 0)
    assert last_run["pod"] == mover.env["POD_NAME"]
    assert last_run["reason"] == "Succeeded"
    assert last_run["result"]["files"] == len(NESTED)
    assert last_run["result"]["checksum"]["verified"] is False
    assert "no hashes to compare" in last_run["result"]["checksum"]["message"]
    report = mover.report()
    assert report["reason"] == "Succeeded"
    assert report["result"] == last_run["result"]
    lines = mover.log_lines()
    assert {line["transfer"] for line in lines} == {name}
    assert any("run ended: Succeeded" in line["message"] for line in lines)
    assert not list(tmp_path.glob("datatx-*")), "the scratch dir (rclone config) is removed"


def test_mover_writes_live_progress_and_stops_on_sigterm(
    datatx_namespace: Namespace,
    tmp_path: Path,
    s3_server: StorageServer,
    sftp_server: StorageServer,
) -> None:
    s3_server.write("bucket/big/blob.bin", os.urandom(40 * 1024 * 1024))
    name = submit(
        datatx_namespace, s3_server, "/bucket/big", sftp_server, "/big",
        rclone=RcloneOptions(bandwidth_limit="2M"),
    )  # fmt: skip
    secrets = transfer_secrets(s3_server, sftp_server)
    mover = Mover(datatx_namespace, name, tmp_path, secrets)
    try:
        seen: list[int] = []
        while len(seen) < 3 and mover.process.poll() is None:
            progress = (datatx_namespace.get(name).get("status") or {}).get("progress") or {}
            if progress.get("bytes", 0) > (seen[-1] if seen else 0):
                seen.append(progress["bytes"])
            time.sleep(0.5)
        used = [*s3_server.secrets, *sftp_server.secrets]
        assert_no_secret(used, mover.argv_and_env())
        mover.process.send_signal(signal.SIGTERM)
        code = mover.wait(60)
    finally:
        mover.stop()

    assert len(seen) == 3, "the status shows the bytes growing while the copy runs"
    assert code == ExitCode.CANCELLED
    body = datatx_namespace.get(name)
    assert body["status"]["lastRun"]["reason"] == "Cancelled"
    assert mover.report()["reason"] == "Cancelled"
    assert not sftp_server.path("big/blob.bin").exists()
    assert not [p for p in sftp_server.path("big").glob("*") if "partial" in p.name]
    assert_no_secret(
        used, json.dumps(body), mover.stderr.read_text(), mover.termination_log.read_text()
    )


def test_mover_says_why_a_transfer_cannot_run(
    datatx_namespace: Namespace,
    tmp_path: Path,
    webdav_server: StorageServer,
    sftp_server: StorageServer,
) -> None:
    webdav_server.write("data/a.txt", b"a")
    name = submit(datatx_namespace, webdav_server, "/data", sftp_server, "/x")
    secrets = transfer_secrets(webdav_server, sftp_server)
    user = sftp_server.options["user"]
    secrets[api.SECRET_KEY_CREDENTIAL] = f"{user}:wrong-password-123"
    mover = Mover(datatx_namespace, name, tmp_path, secrets)
    try:
        code = mover.wait()
    finally:
        mover.stop()

    assert code == ExitCode.RETRYABLE
    last_run = datatx_namespace.get(name)["status"]["lastRun"]
    assert last_run["reason"] == "AuthenticationFailed"
    assert last_run["message"].startswith("authentication failed at the destination 'dst' (sftp")
    assert mover.report()["message"] == last_run["message"]
    assert_no_secret(["wrong-password-123", *webdav_server.secrets], mover.stderr.read_text())


def test_mover_without_its_environment_fails_permanently(tmp_path: Path) -> None:
    done = subprocess.run(
        [MOVER, "--driver", "rclone"],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == ExitCode.PERMANENT
    assert "DATATX_TRANSFER" in done.stderr
    assert "POD_NAMESPACE" in done.stderr


def test_every_driver_loads_as_a_driver() -> None:
    from datatx_operator.drivers import driver_class
    from datatx_operator.drivers.base import Driver
    from datatx_operator.models import Driver as Kind

    for kind in Kind:
        assert issubclass(driver_class(kind), Driver), kind


def test_an_rclone_mover_imports_only_what_it_runs() -> None:
    """Every import delays each transfer's start: an rclone run must not load the HTTP
    drivers (httpx) nor the Batch and Core APIs' generated models (about 0.6 s)."""
    probe = (
        "import sys, datatx_operator.mover as m, datatx_operator.kube as k\n"
        "from datatx_operator.models import Driver\n"
        "m.driver_class(Driver.RCLONE)\n"
        "k.Kube(k.client.ApiClient())\n"
        "print(sorted(n for n in ('httpx', 'kubernetes.aio.client.api.core_v1_api',"
        " 'kubernetes.aio.client.api.batch_v1_api') if n in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"
