"""A real Rucio server (PyPI `rucio` 41.5.1 under gunicorn) on SQLite, for the Rucio driver.

Set up as in ../shared/reference/rucio/FACTS.md: the schema, the base VO and root, two posix
RSEs (SRC-RSE, DST-RSE) with distances and account limits, the scope `test`, and files
uploaded to SRC-RSE with the real upload client. The conveyor uses the mock transfertool
(it copies no bytes); `conveyor()` runs submitter, poller and finisher once each, which
takes a REPLICATING rule to OK.

Rucio pins dependencies below the versions datatx locks (urllib3 1.26 among them), so it
runs from its own venv, made once per requirements file with `uv` from PyPI into the user
cache (`~/.cache/datatx/`) and reused. The server and the tools read the password from
the 0600 rucio.cfg, never from argv or the environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

HOST = "127.0.0.1"
HERE = Path(__file__).parent
REQUIREMENTS = HERE / "rucio-requirements.txt"
TOOL = HERE / "rucio_tool.py"
STARTUP_SECONDS = 60.0
USERNAME = "ddmlab"
ACCOUNT = "root"

log = logging.getLogger(__name__)


@dataclass
class RucioServer:
    url: str
    root: Path
    python: Path
    env: dict[str, str]
    password: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def account(self) -> str:
        return ACCOUNT

    @property
    def credential(self) -> str:
        """The userpass credential in datatx's form."""
        return f"{USERNAME}:{self.password}"

    def tool(self, *args: str) -> str:
        """Run rucio_tool.py in Rucio's venv; its stdout."""
        completed = subprocess.run(
            [str(self.python), "-P", str(TOOL), *args],  # -P: not this folder first
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"rucio_tool {args[0]} failed:\n{completed.stderr[-3000:]}")
        return completed.stdout

    def upload(self, name: str, size: int = 1000) -> str:
        """A new file DID `test:<name>` with one replica on SRC-RSE."""
        self.tool("upload", str(self.root), name, str(size))
        return f"test:{name}"

    def dataset(self, name: str, files: int, size: int = 1000) -> str:
        """A new dataset DID `test:<name>` of `files` new files, each on SRC-RSE."""
        self.tool("dataset", str(self.root), name, str(files), str(size))
        return f"test:{name}"

    def conveyor(self, bulk: int | None = None) -> float:
        """One pass of the conveyor daemons (at most `bulk` transfers submitted); seconds."""
        started = time.monotonic()
        self.tool("conveyor", *([] if bulk is None else [str(bulk)]))
        return time.monotonic() - started

    def oidc_token(self) -> str:
        """An OIDC access token of the account that Rucio accepts (see rucio_tool.py)."""
        return self.tool("oidc-token", ACCOUNT).strip().splitlines()[-1]

    def set_rule_state(self, rule_id: str, state: str) -> None:
        self.tool("rule-state", rule_id, state)

    def token(self) -> str:
        response = httpx.get(
            f"{self.url}/auth/userpass",
            headers={
                "X-Rucio-Account": ACCOUNT,
                "X-Rucio-Username": USERNAME,
                "X-Rucio-Password": self.password,
            },
        )
        response.raise_for_status()
        return response.headers["X-Rucio-Auth-Token"]

    def rules(self, did: str) -> list[dict[str, object]]:
        """The rules of a DID (Rucio answers one JSON object per line)."""
        scope, name = did.split(":", 1)
        response = httpx.get(
            f"{self.url}/dids/{scope}/{name}/rules", headers={"X-Rucio-Auth-Token": self.token()}
        )
        response.raise_for_status()
        return [json.loads(line) for line in response.text.splitlines() if line.strip()]

    def rule(self, rule_id: str) -> dict[str, object]:
        response = httpx.get(
            f"{self.url}/rules/{rule_id}", headers={"X-Rucio-Auth-Token": self.token()}
        )
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body


def rucio_python() -> Path:
    """The interpreter of the Rucio venv, made from the pinned requirements if missing."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "datatx"
    venv = cache / f"rucio-{digest}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    building = cache / f"rucio-{digest}.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run(
        [uv, "venv", "--quiet", "--relocatable", "--python", sys.executable, str(building)],
        check=True,
        timeout=300,
    )
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(building / "bin" / "python"),
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
        timeout=900,
    )
    (building / ".complete").touch()
    with contextlib.suppress(OSError):  # another run finished first: use theirs
        building.rename(venv)
    shutil.rmtree(building, ignore_errors=True)
    if not (venv / ".complete").exists():
        raise RuntimeError("the Rucio venv could not be made")
    return python


def _config(root: Path, venv: Path, port: int, password: str) -> Path:
    template = venv / "rucio" / "etc" / "alembic.ini.template"
    site = next((venv / "lib").glob("python3*/site-packages"))
    alembic = root / "alembic.ini"
    database = f"sqlite:///{root}/rucio.db"
    lines = []
    for line in template.read_text().splitlines():
        if line.startswith(("sqlalchemy.url", "default =", "version_table_schema")):
            continue
        if line.startswith("script_location"):
            line = f"script_location = {site}/rucio/db/sqla/migrate_repo/"
        lines.append(line)
        if line.strip() == "[alembic]":
            lines.append(f"sqlalchemy.url = {database}")
    alembic.write_text("\n".join(lines) + "\n")
    config = root / "rucio.cfg"
    config.touch(mode=0o600)
    config.write_text(
        f"""[common]
logdir = {root}/log
loglevel = INFO
[client]
rucio_host = http://{HOST}:{port}
auth_host = http://{HOST}:{port}
auth_type = userpass
username = {USERNAME}
password = {password}
account = {ACCOUNT}
request_retries = 1
[database]
default = {database}
[bootstrap]
userpass_identity = {USERNAME}
userpass_pwd = {password}
userpass_email = root@example.org
[alembic]
cfg = {alembic}
[policy]
permission = generic
schema = generic
lfn2pfn_algorithm_default = hash
[conveyor]
transfertool = mock
[monitor]
enable_metrics = False
"""
    )
    (root / "log").mkdir(exist_ok=True)
    return config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_up(url: str, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{log_file.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"Rucio did not answer within {STARTUP_SECONDS} s")


@pytest.fixture(scope="session")
def rucio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RucioServer]:
    """A real Rucio server for the whole session; every test uploads its own files."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    python = rucio_python()
    venv = python.parent.parent
    timings["venv"] = time.monotonic() - started
    root = tmp_path_factory.mktemp("rucio")
    port = _free_port()
    password = secrets.token_urlsafe(18)
    config = _config(root, venv, port, password)
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "RUCIO_CONFIG": str(config), "HOME": str(root)}
    server = RucioServer(f"http://{HOST}:{port}", root, python, env, password, timings)
    step = time.monotonic()
    server.tool("bootstrap")
    timings["bootstrap"] = time.monotonic() - step
    step = time.monotonic()
    log_file = root / "gunicorn.log"
    with log_file.open("wb") as output:
        process = subprocess.Popen(
            [
                str(python),
                "-m",
                "gunicorn",
                "--workers",
                "1",
                "--threads",
                "4",
                "--bind",
                f"{HOST}:{port}",
                "rucio.web.rest.flaskapi.v1.main:application",
            ],
            env=env,
            cwd=root,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_up(server.url, process, log_file)
        timings["gunicorn"] = time.monotonic() - step
        step = time.monotonic()
        server.tool("setup", str(root))
        timings["setup"] = time.monotonic() - step
        timings["total"] = time.monotonic() - started
        log.info("Rucio up: %s", {k: round(v, 2) for k, v in timings.items()})
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
