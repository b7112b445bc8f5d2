"""FileSender: upload the source files in chunks with signed requests, then let FileSender
mail the recipients.

Every request is signed as FileSender's remote authentication wants it (see `sign`), with
the user's API secret (the transfer's credential) and a fresh timestamp per attempt, since
FileSender refuses signatures older than 15 s. FileSender keeps no upload progress, so
progress is the bytes this run sent. Cancelling deletes the remote transfer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from datatx_operator.drivers.base import DriverError, Outcome, Reason, RunContext
from datatx_operator.drivers.http import ServiceClient, clip, json_body
from datatx_operator.drivers.service import ServiceDriver, now
from datatx_operator.drivers.sources import Source, SourceFile, open_source
from datatx_operator.models import FileSenderOptions, Progress, Result

log = logging.getLogger(__name__)

SERVICE = "FileSender"
DEFAULT_CHUNK_SIZE = 5 * 1024 * 1024
# FileSender's own retryable answers are rare; a proxy in front gives these.
RETRY_STATUS = frozenset({429, 502, 503, 504})


def sign(
    secret: str, method: str, server: str, path: str, args: Mapping[str, str], body: bytes
) -> str:
    """HMAC-SHA1 over `method&server/path?sorted args` plus `&body` when there is one."""
    signed = f"{method.lower()}&{server}{path}"
    if args:
        signed += "?" + "&".join(f"{key}={args[key]}" for key in sorted(args))
    payload = signed.encode() + (b"&" + body if body else b"")
    return hmac.new(secret.encode(), payload, hashlib.sha1).hexdigest()


class FileSenderDriver(ServiceDriver):
    """One FileSender transfer per run; its id is the run's `remote_id`."""

    service = SERVICE

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.transfer_id: int | None = None
        self._source: Source | None = None
        self._files: list[tuple[SourceFile, Mapping[str, Any]]] = []
        self._roundtrip = ""
        self._chunk_size = DEFAULT_CHUNK_SIZE
        self._started_at = 0.0

    @property
    def options(self) -> FileSenderOptions:
        if self.context.spec.file_sender is None:
            raise DriverError(Reason.INVALID_REQUEST, "driver filesender needs fileSender options")
        return self.context.spec.file_sender

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        args: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        client: ServiceClient | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """A signed request, signed anew for each attempt."""
        secret = self.context.secrets.get("credential", "").strip()
        if not secret:
            raise DriverError(Reason.AUTHENTICATION_FAILED, "no FileSender API secret was given")
        base = urlsplit(self.options.endpoint)
        server, full_path = base.hostname or "", base.path.rstrip("/") + path

        def signed_args() -> dict[str, str]:
            query = {
                **(args or {}),
                "remote_user": self.options.remote_user,
                "timestamp": str(int(time.time())),
            }
            query["signature"] = sign(secret, method, server, full_path, query, body)
            return query

        content_type = "application/octet-stream" if args else "application/json"
        return await (client or self._service()).request(
            method,
            path,
            sign=signed_args,
            retry_status=RETRY_STATUS,
            idempotent=idempotent,
            content=body or None,
            headers={"Content-Type": content_type, "Accept": "application/json", **(headers or {})},
        )

    async def start(self) -> None:
        self._source = await open_source(
            self.context.spec, self.context.secrets, self.context.workdir
        )
        files = await self._source.files()
        if not files:
            raise DriverError(
                Reason.INVALID_REQUEST, f"source {self.context.spec.source} holds no file"
            )
        info = await self._call("GET", "/info")
        if info.status_code == 200:
            self._chunk_size = int(
                (json_body(info) or {}).get("upload_chunk_size") or DEFAULT_CHUNK_SIZE
            )
        expires = int(time.time()) + self.options.expires_days * 86400
        request: dict[str, Any] = {
            "files": [
                {"name": f.relative, "size": f.size, "mime_type": "application/octet-stream"}
                for f in files
            ],
            "recipients": self.options.recipients,
            "options": ["email_upload_complete"],
            "expires": expires,
            "subject": self.options.subject,
            "message": self.options.message,
            "aup_checked": 1,
        }
        if self.options.sender:
            request["from"] = self.options.sender
        async with self._lock:
            if self._cancelled:
                return
            response = await self._call(
                "POST", "/transfer", body=_encode(request), idempotent=False
            )
            if response.status_code not in (200, 201):
                raise _failure(response, "refused the transfer")
            transfer = json_body(response)
            self.transfer_id = int(transfer["id"])
        self._roundtrip = str(transfer.get("roundtriptoken") or "")
        remote_files = list(transfer.get("files") or [])
        by_name = {str(f.get("name")): f for f in remote_files}
        self._files = [(f, by_name.get(f.relative) or remote_files[i]) for i, f in enumerate(files)]
        self._progress = Progress(
            total_files=len(files), total_bytes=sum(f.size for f in files), update_time=now()
        )
        log.info("FileSender transfer %s created with %d files", self.transfer_id, len(files))

    async def _follow(self) -> Outcome:
        if self.transfer_id is None:
            return Outcome(Reason.CANCELLED, "cancelled before the FileSender transfer began")
        try:
            await self._upload()
        except asyncio.CancelledError:
            if self._cancelled:
                return self._deleted()
            raise
        return Outcome(
            Reason.SUCCEEDED,
            f"FileSender transfer {self.transfer_id}: {len(self._files)} files uploaded, "
            f"{len(self.options.recipients)} recipients notified",
            self._result(),
        )

    async def _failed(self, error: DriverError) -> Outcome:
        if self._cancelled:
            return self._deleted()
        await self._discard()
        return Outcome(error.reason, error.message, self._result(errors=1))

    def _deleted(self) -> Outcome:
        return Outcome(
            Reason.CANCELLED, f"FileSender transfer {self.transfer_id} deleted", self._result()
        )

    async def _upload(self) -> None:
        assert self._source is not None
        self._started_at = time.monotonic()
        for number, (file, remote) in enumerate(self._files):
            offset = 0
            async for chunk in self._source.chunks(file, self._chunk_size):
                if self._cancelled:
                    raise DriverError(Reason.CANCELLED, "cancelled")
                await self._put_chunk(file, remote, offset, chunk)
                offset += len(chunk)
                self._count(number, len(chunk))
            if offset != file.size:
                raise DriverError(
                    Reason.REMOTE_FAILED,
                    f"{file.relative} changed while it was read ({offset} of {file.size} bytes)",
                )
            response = await self._call(
                "PUT", f"/file/{remote['id']}", body=_encode({"complete": True})
            )
            if response.status_code != 200:
                raise _failure(response, f"did not complete {file.relative}")
            self._count(number + 1, 0, file_done=True)
        response = await self._call(
            "PUT", f"/transfer/{self.transfer_id}", body=_encode({"complete": True})
        )
        if response.status_code != 200:
            raise _failure(response, f"did not complete transfer {self.transfer_id}")

    async def _put_chunk(
        self, file: SourceFile, remote: Mapping[str, Any], offset: int, chunk: bytes
    ) -> None:
        response = await self._call(
            "PUT",
            f"/file/{remote['id']}/chunk/{offset}",
            body=chunk,
            args={"key": str(remote.get("puid", "")), "roundtriptoken": self._roundtrip},
            headers={
                "X-Filesender-File-Size": str(file.size),
                "X-Filesender-Chunk-Offset": str(offset),
                "X-Filesender-Chunk-Size": str(len(chunk)),
            },
        )
        if response.status_code != 200:
            raise _failure(response, f"refused a chunk of {file.relative} at offset {offset}")

    def _count(self, files_done: int, sent: int, file_done: bool = False) -> None:
        done = self._progress.bytes + sent
        elapsed = max(time.monotonic() - self._started_at, 1e-3)
        rate = int(done / elapsed)
        total = self._progress.total_bytes
        self._progress = Progress(
            bytes=done,
            total_bytes=total,
            files=files_done if file_done else self._progress.files,
            total_files=self._progress.total_files,
            rate_bytes_per_second=rate,
            eta_seconds=int((total - done) / rate) if rate else None,
            percent=100 * done // total if total else 0,
            update_time=now(),
        )

    def _result(self, errors: int = 0) -> Result:
        return Result(
            files=self._progress.files,
            bytes=self._progress.bytes,
            errors=errors,
            remote_id=None if self.transfer_id is None else str(self.transfer_id),
        )

    async def _delete(self, client: ServiceClient | None = None) -> bool:
        try:
            response = await self._call("DELETE", f"/transfer/{self.transfer_id}", client=client)
        except DriverError as error:
            log.error(
                "delete of FileSender transfer %s failed: %s", self.transfer_id, error.message
            )
            return False
        if response.status_code == 200:
            log.info("FileSender transfer %s deleted", self.transfer_id)
            return True
        log.error(
            "FileSender did not delete transfer %s: %s", self.transfer_id, _describe(response)
        )
        return False

    async def _discard(self) -> None:
        """A failed upload leaves no half transfer behind (best effort)."""
        if self.transfer_id is not None:
            await self._delete()

    async def cancel(self) -> bool:
        async with self._lock:
            self._cancelled = True
            if self.transfer_id is None:
                return True
            async with self._new_client() as client:
                return await self._delete(client)


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _describe(response: httpx.Response) -> str:
    body = json_body(response)
    if isinstance(body, dict) and body.get("message"):
        details = body.get("details")
        return clip(
            f"{response.status_code} {body['message']}" + (f" {details}" if details else "")
        )
    return f"{response.status_code} {response.reason_phrase}"


def _failure(response: httpx.Response, doing: str) -> DriverError:
    body = json_body(response)
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    if (
        message.startswith("auth_")
        or message == "rest_authentication_required"
        or response.status_code == 401
    ):
        reason = Reason.AUTHENTICATION_FAILED
        if message == "auth_remote_too_late":
            doing += " as too late: the clocks of this cluster and FileSender disagree"
    elif response.status_code == 404:
        reason = Reason.NOT_FOUND
    elif response.status_code == 400 and message.startswith("rest_"):
        reason = Reason.INVALID_REQUEST
    else:
        reason = Reason.REMOTE_FAILED
    return DriverError(reason, f"{SERVICE} {doing} ({_describe(response)})")
