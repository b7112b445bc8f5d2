"""A FileSender REST server for tests, following ../shared/reference/filesender/FACTS.md.

No FileSender can be installed here, so this one implements the upload flow as the
reference (and FileSender's AuthRemote/RestServer code) describes it: every request is
checked for its signature - HMAC-SHA1 with the user's secret over the lowercased method,
`&`, the server name without port, the script path and path info, `?` and the query
arguments but `signature` sorted as `k=v` joined by `&`, then `&` and the raw body if any;
a timestamp older than 15 s is refused with `auth_remote_too_late`. Errors are FileSender's
`{"message", "uid", "details"}`, with HTTP 500 for the auth exceptions (they carry no code).

The transfer object carries no status field (the reference: progress is what the uploader
counted); the server keeps the state for itself. Chunks are checked as FileSender does
(file size, offset and chunk size headers, chunk size limit, bounds) and stored; a file
completes only when all its bytes arrived. Tests can make chunk uploads fail
(`fail_chunks`: "503" answers 503, "drop" closes the connection unanswered) and move the
server's clock (`clock_offset`). It runs on its own thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

HOST = "127.0.0.1"
SCRIPT = "/rest.php"
LATE_AFTER_SECONDS = 15


class RestError(Exception):
    def __init__(self, message: str, status: int = 500, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details


@dataclass
class StoredFile:
    id: int
    name: str
    size: int
    puid: str
    chunks: dict[int, bytes] = field(default_factory=dict)
    complete: bool = False

    def data(self) -> bytes:
        return b"".join(self.chunks[offset] for offset in sorted(self.chunks))


@dataclass
class StoredTransfer:
    id: int
    user: str
    body: dict[str, Any]
    files: list[StoredFile]
    roundtriptoken: str
    status: str = "started"


class FileSenderServer:
    def __init__(self, user: str, secret: str, chunk_size: int) -> None:
        self.users = {user: secret}
        self.user = user
        self.secret = secret
        self.chunk_size = chunk_size
        self.lock = threading.Lock()
        self.transfers: dict[int, StoredTransfer] = {}
        self.deleted: list[int] = []
        self.fail_chunks: list[str] = []
        self.clock_offset = 0.0
        self.chunk_attempts = 0
        self.port = 0
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{SCRIPT}"

    def transfer(self, transfer_id: int) -> StoredTransfer:
        with self.lock:
            return self.transfers[transfer_id]

    # -- authentication ------------------------------------------------------------------

    def _authenticate(self, request: web.Request, body: bytes) -> str:
        query = request.query
        if "signature" not in query or "timestamp" not in query:
            raise RestError("rest_authentication_required", 403)
        uid = query.get("remote_user")
        if not uid:
            raise RestError("rest_authentication_required", 403)
        late = time.time() + self.clock_offset - int(query["timestamp"]) - LATE_AFTER_SECONDS
        if late > 0:
            raise RestError("auth_remote_too_late")
        secret = self.users.get(uid)
        if secret is None:
            raise RestError("auth_remote_user_rejected")
        signed = f"{request.method.lower()}&{HOST}{request.path}"
        args = sorted((k, v) for k, v in query.items() if k != "signature")
        if args:
            signed += "?" + "&".join(f"{k}={v}" for k, v in args)
        payload = signed.encode() + (b"&" + body if body else b"")
        expected = hmac.new(secret.encode(), payload, hashlib.sha1).hexdigest()
        if not hmac.compare_digest(expected, query["signature"]):
            raise RestError("auth_remote_signature_check_failed")
        return uid

    # -- HTTP ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.chunk_size * 2 + 65536)
        app.router.add_route("*", SCRIPT + "/{tail:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        parts = [part for part in request.match_info["tail"].split("/") if part]
        try:
            if parts == ["info"] and request.method == "GET":
                return _json(self._info())
            uid = self._authenticate(request, body)
            handler = {
                ("POST", "transfer"): self._create,
                ("GET", "transfer"): self._get,
                ("PUT", "transfer"): self._complete_transfer,
                ("DELETE", "transfer"): self._delete,
                ("PUT", "file"): self._put_file,
            }.get((request.method, parts[0] if parts else ""))
            if handler is None:
                raise RestError("rest_endpoint_not_implemented", 501)
            if (request.method, parts[0]) == ("PUT", "file") and "chunk" in parts:
                failure = self._injected()
                if failure == "drop":
                    assert request.transport is not None
                    request.transport.close()
                    return web.Response(status=500)
                if failure:
                    raise RestError("injected failure", int(failure))
            result = handler(uid, request, parts[1:], body)
            if request.method == "POST":
                return _json(result, 201, {"Location": f"{self.url}/transfer/{result['id']}"})
            return _json(result)
        except RestError as error:
            body_out = {"message": error.message, "uid": uuid.uuid4().hex, "details": error.details}
            return _json(body_out, error.status)

    def _injected(self) -> str | None:
        with self.lock:
            self.chunk_attempts += 1
            return self.fail_chunks.pop(0) if self.fail_chunks else None

    def _info(self) -> dict[str, Any]:
        return {
            "url": f"http://{HOST}:{self.port}/",
            "upload_chunk_size": self.chunk_size,
            "upload_crypted_chunk_size": self.chunk_size + 32,
            "max_transfer_size": 107374182400,
            "max_transfer_files": 30,
        }

    def _create(
        self, uid: str, request: web.Request, path: list[str], body: bytes
    ) -> dict[str, Any]:
        data = _decode(body)
        files = data.get("files")
        recipients = data.get("recipients")
        if not files:
            raise RestError("rest_missing_parameter", 400, {"parameter": "files"})
        if not recipients:
            raise RestError("rest_missing_parameter", 400, {"parameter": "recipients"})
        expires = int(data.get("expires") or 0)
        if expires <= time.time():
            raise RestError("transfer_bad_expire", 400)
        if not data.get("aup_checked"):
            raise RestError("transfer_user_must_accept_aup", 400)
        with self.lock:
            transfer_id = next(self._ids)
            stored = [
                StoredFile(next(self._ids), str(f["name"]), int(f["size"]), uuid.uuid4().hex)
                for f in files
            ]
            transfer = StoredTransfer(transfer_id, uid, data, stored, secrets.token_hex(16))
            self.transfers[transfer_id] = transfer
            return self._cast(transfer)

    def _cast(self, transfer: StoredTransfer) -> dict[str, Any]:
        return {
            "id": transfer.id,
            "user_id": transfer.user,
            "user_email": transfer.body.get("from", f"{transfer.user}@example.org"),
            "subject": transfer.body.get("subject", ""),
            "message": transfer.body.get("message", ""),
            "expires": {"raw": transfer.body["expires"]},
            "options": transfer.body.get("options", []),
            "files": [
                {
                    "id": f.id,
                    "transfer_id": transfer.id,
                    "puid": f.puid,
                    "name": f.name,
                    "size": f.size,
                    "sha1": None,
                }
                for f in transfer.files
            ],
            "recipients": [
                {"id": index + 1, "transfer_id": transfer.id, "email": email}
                for index, email in enumerate(transfer.body["recipients"])
            ],
            "roundtriptoken": transfer.roundtriptoken,
        }

    def _owned(self, uid: str, transfer_id: str) -> StoredTransfer:
        transfer = self.transfers.get(int(transfer_id)) if transfer_id.isdigit() else None
        if transfer is None:
            raise RestError("transfer_not_found", 404)
        if transfer.user != uid:
            raise RestError("rest_ownership_required", 403)
        return transfer

    def _get(self, uid: str, request: web.Request, path: list[str], body: bytes) -> Any:
        with self.lock:
            return self._cast(self._owned(uid, path[0]))

    def _delete(self, uid: str, request: web.Request, path: list[str], body: bytes) -> Any:
        with self.lock:
            transfer = self._owned(uid, path[0])
            del self.transfers[transfer.id]
            self.deleted.append(transfer.id)
            return True

    def _complete_transfer(
        self, uid: str, request: web.Request, path: list[str], body: bytes
    ) -> Any:
        with self.lock:
            transfer = self._owned(uid, path[0])
            if not _decode(body).get("complete"):
                raise RestError("rest_bad_parameter", 400, {"parameter": "complete"})
            if not all(f.complete for f in transfer.files):
                raise RestError("transfer_files_incomplete", 400)
            transfer.status = "available"
            return True

    def _put_file(self, uid: str, request: web.Request, path: list[str], body: bytes) -> Any:
        with self.lock:
            stored, transfer = self._file(uid, path[0])
            if len(path) == 1:
                if not _decode(body).get("complete"):
                    raise RestError("rest_bad_parameter", 400, {"parameter": "complete"})
                if len(stored.data()) != stored.size:
                    raise RestError("file_integrity_check_failed", 400)
                stored.complete = True
                return True
            if path[1] != "chunk" or len(path) != 3 or not path[2].isdigit():
                raise RestError("rest_bad_parameter", 400, {"parameter": "mode"})
            return self._chunk(stored, transfer, int(path[2]), request, body)

    def _file(self, uid: str, file_id: str) -> tuple[StoredFile, StoredTransfer]:
        for transfer in self.transfers.values():
            for stored in transfer.files:
                if str(stored.id) == file_id:
                    if transfer.user != uid:
                        raise RestError("rest_ownership_required", 403)
                    return stored, transfer
        raise RestError("file_not_found", 404)

    def _chunk(
        self,
        stored: StoredFile,
        transfer: StoredTransfer,
        offset: int,
        request: web.Request,
        body: bytes,
    ) -> Any:
        if transfer.status not in ("started", "uploading"):
            raise RestError("rest_cannot_add_data_to_complete_transfer", 400)
        if request.query.get("key") != stored.puid:
            raise RestError("rest_authentication_required", 403)
        if request.query.get("roundtriptoken") != transfer.roundtriptoken:
            raise RestError("rest_roundtrip_token_invalid", 400)
        headers = request.headers
        checks = {
            "file_size": (headers.get("X-Filesender-File-Size"), stored.size),
            "chunk_offset": (headers.get("X-Filesender-Chunk-Offset"), offset),
            "chunk_size": (headers.get("X-Filesender-Chunk-Size"), len(body)),
        }
        for name, (given, actual) in checks.items():
            if given is not None and int(given) != actual:
                raise RestError("rest_sanity_check_failed", 400, {"check": name})
        if len(body) > self.chunk_size:
            raise RestError("rest_sanity_check_failed", 400, {"check": "chunk_size"})
        if offset + len(body) > stored.size:
            raise RestError("file_chunk_out_of_bounds")
        stored.chunks[offset] = body
        transfer.status = "uploading"
        return {"offset": offset, "written": len(body)}

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the FileSender test server did not start")

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        runner = web.AppRunner(self.app(), access_log=None)
        loop.run_until_complete(runner.setup())
        sock = socket.socket()
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None


def _decode(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise RestError("rest_bad_parameter", 400, {"parameter": "body"}) from None
    if not isinstance(data, dict):
        raise RestError("rest_bad_parameter", 400, {"parameter": "body"})
    return data


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


@pytest.fixture
def filesender_server() -> Iterator[FileSenderServer]:
    """A FileSender on a free port of 127.0.0.1 with one user, its API secret, 64 KiB chunks."""
    server = FileSenderServer(
        user="alice@example.org", secret=secrets.token_hex(24), chunk_size=64 * 1024
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
