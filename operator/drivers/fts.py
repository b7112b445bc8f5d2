"""FTS3: submit one job over the REST API with an OIDC bearer token and follow it.

The REST API tells job and file states but no byte counts while a file moves, so progress
is finished files over all files (bytes counted as files finish). Cancelling reads the
body of the DELETE answer: a job already terminal answers 200 with "304 Not Modified"
inside, and then the job's own end is the outcome, not a cancellation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import posixpath
from collections.abc import Mapping
from typing import Any

import httpx

from datatx_operator.drivers import webdav
from datatx_operator.drivers.base import DriverError, Outcome, Reason, RunContext
from datatx_operator.drivers.http import ServiceClient, clip, json_body
from datatx_operator.drivers.service import ServiceDriver, now
from datatx_operator.models import Checksum, FtsOptions, Progress, Result

log = logging.getLogger(__name__)

SERVICE = "FTS3"
TERMINAL_STATES = frozenset({"FINISHED", "FAILED", "FINISHEDDIRTY", "CANCELED"})
SCHEMES = {"https": "davs", "http": "dav"}
MAX_REASONS = 5


class FtsDriver(ServiceDriver):
    """One FTS3 job per run; the job id is the run's `remote_id`."""

    service = SERVICE

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.job_id: str | None = None
        self._files: list[tuple[str, int]] = []  # (relative path shown in messages, size)

    @property
    def options(self) -> FtsOptions:
        if self.context.spec.fts is None:
            raise DriverError(Reason.INVALID_REQUEST, "driver fts needs the fts options")
        return self.context.spec.fts

    def _token(self) -> str:
        token = self.context.secrets.get("credential", "").strip()
        if not token:
            raise DriverError(Reason.AUTHENTICATION_FAILED, "no FTS3 bearer token was given")
        return token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}

    async def start(self) -> None:
        spec = self.context.spec
        source_base, source_path, source_auth = self._location(spec.source)
        dest_base, dest_path, _ = self._location(spec.destination)
        lister = ServiceClient(
            "source WebDAV server",
            source_base,
            retries=self.options.request_retries,
            backoff_seconds=self.backoff_seconds,
            headers=source_auth,
        )
        try:
            listed = await webdav.list_files(
                lister, webdav.join_url(source_base, source_path), f"source {spec.source}"
            )
        finally:
            await lister.aclose()
        files = []
        for item in listed:
            if item.relative:
                target = posixpath.join(dest_path, item.relative)
                source = posixpath.join(source_path, item.relative)
            else:
                source = source_path
                target = dest_path
                if dest_path.endswith("/") or not dest_path:
                    target = posixpath.join(dest_path, posixpath.basename(source_path))
            entry: dict[str, Any] = {
                "sources": [_fts_url(source_base, source)],
                "destinations": [_fts_url(dest_base, target)],
            }
            if item.size:
                entry["filesize"] = item.size
            if self.options.verify_checksum != "none":
                entry["checksum"] = "ADLER32"
            files.append(entry)
            self._files.append((item.relative or posixpath.basename(source_path), item.size))
        body = {
            "files": files,
            "params": {
                "verify_checksum": self.options.verify_checksum,
                "overwrite": self.options.overwrite,
                "retry": self.options.retry,
                "priority": self.options.priority,
                "job_metadata": {
                    "datatx_transfer": f"{self.context.namespace}/{self.context.transfer}",
                    "datatx_run": spec.restarts,
                },
            },
        }
        async with self._lock:
            if self._cancelled:
                return
            response = await self._service().request("POST", "/jobs", json=body, idempotent=False)
            if response.status_code != 200:
                raise _failure(response, "refused the job")
            self.job_id = str(json_body(response)["job_id"])
        self._progress = Progress(
            total_files=len(files),
            total_bytes=sum(size for _, size in self._files),
            update_time=now(),
        )
        log.info("FTS3 job %s submitted with %d files", self.job_id, len(files))

    def _location(self, location: str) -> tuple[str, str, dict[str, str]]:
        """The remote's base url, the path below it and the headers that open it."""
        name, _, path = location.partition(":")
        remote = self.context.spec.remote(name)
        url = remote.options.get("url")
        if url is None or not url.startswith(("http://", "https://")):
            raise DriverError(
                Reason.INVALID_REQUEST, f"remote {name} needs an http(s) url for FTS3"
            )
        secret = {
            option: self.context.secrets.get(f"{name}.{option}", "")
            for option in remote.secret_options
        }
        bearer = secret.get("bearer_token") or remote.options.get("bearer_token")
        user = secret.get("user") or remote.options.get("user")
        headers: dict[str, str] = {}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        elif user and secret.get("pass"):
            basic = base64.b64encode(f"{user}:{secret['pass']}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        else:
            # FTS3 itself presents the submitter's token to the storage; list with it too.
            headers["Authorization"] = f"Bearer {self._token()}"
        return url, path, headers

    async def _follow(self) -> Outcome:
        if self.job_id is None:
            return Outcome(Reason.CANCELLED, "cancelled before the FTS3 job was submitted")
        while True:
            job, files = await self._poll()
            state = str(job.get("job_state"))
            if state in TERMINAL_STATES:
                return self._outcome(state, job, files)
            if self._cancelled:
                return Outcome(Reason.CANCELLED, f"FTS3 job {self.job_id} canceled", self._result())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.options.poll_interval_seconds)

    async def _poll(self) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
        client = self._service()
        job_response = await client.request("GET", f"/jobs/{self.job_id}")
        if job_response.status_code != 200:
            raise _failure(job_response, f"could not tell the state of job {self.job_id}")
        files_response = await client.request("GET", f"/jobs/{self.job_id}/files")
        if files_response.status_code != 200:
            raise _failure(files_response, f"could not list the files of job {self.job_id}")
        job, files = json_body(job_response), json_body(files_response)
        finished = [f for f in files if f.get("file_state") == "FINISHED"]
        total = len(files) or self._progress.total_files
        done_bytes = sum(int(f.get("filesize") or f.get("user_filesize") or 0) for f in finished)
        total_bytes = sum(int(f.get("user_filesize") or f.get("filesize") or 0) for f in files)
        self._progress = Progress(
            files=len(finished),
            total_files=total,
            bytes=done_bytes,
            total_bytes=max(total_bytes, done_bytes),
            percent=100 * len(finished) // total if total else 0,
            update_time=now(),
        )
        return job, files

    def _result(self, errors: int = 0) -> Result:
        checksum = None
        if self.options.verify_checksum != "none" and self._progress.files:
            checksum = Checksum(verified=True, algorithm="ADLER32", message="verified by FTS3")
        return Result(
            files=self._progress.files,
            bytes=self._progress.bytes,
            errors=errors,
            checksum=checksum,
            remote_id=self.job_id,
        )

    def _outcome(
        self, state: str, job: Mapping[str, Any], files: list[Mapping[str, Any]]
    ) -> Outcome:
        failed = [f for f in files if f.get("file_state") != "FINISHED"]
        if state == "FINISHED":
            return Outcome(
                Reason.SUCCEEDED,
                f"FTS3 job {self.job_id} finished: {len(files)} files",
                self._result(),
            )
        if state == "CANCELED" and self._cancelled:
            return Outcome(Reason.CANCELLED, f"FTS3 job {self.job_id} canceled", self._result())
        reasons = _file_reasons(failed)
        if state == "FINISHEDDIRTY":
            reason = Reason.PARTIAL_FAILURE
            text = f"{len(failed)} of {len(files)} files failed"
        elif state == "CANCELED":
            reason = Reason.REMOTE_FAILED
            text = "canceled on the FTS3 side"
        else:
            checksum = failed and all("checksum" in str(f.get("reason")).lower() for f in failed)
            reason = Reason.CHECKSUM_MISMATCH if checksum else Reason.REMOTE_FAILED
            text = f"failed ({clip(job.get('reason') or 'no reason given')})"
        message = f"FTS3 job {self.job_id} {text}" + (f": {reasons}" if reasons else "")
        return Outcome(reason, clip(message, 1000), self._result(errors=len(failed)))

    async def cancel(self) -> bool:
        async with self._lock:
            self._cancelled = True
            self._stop.set()
            if self.job_id is None:
                return True
            try:
                async with self._new_client() as client:
                    response = await client.request("DELETE", f"/jobs/{self.job_id}")
            except DriverError as error:
                log.error("cancel of FTS3 job %s failed: %s", self.job_id, error.message)
                return False
        body = json_body(response)
        if response.status_code == 404:
            log.warning("FTS3 no longer knows job %s: nothing runs there", self.job_id)
            return True
        if response.status_code != 200 or not isinstance(body, dict):
            log.error("cancel of FTS3 job %s refused: %s", self.job_id, _describe(response))
            return False
        if str(body.get("http_status", "")).startswith("304"):
            # Terminal already: nothing runs any more, and wait() reports how it ended.
            self._cancelled = False
            log.info("FTS3 job %s had already ended (%s)", self.job_id, body.get("job_state"))
            return True
        if body.get("job_state") == "CANCELED":
            log.info("FTS3 job %s canceled", self.job_id)
            return True
        log.error("FTS3 job %s not canceled: %s", self.job_id, _describe(response))
        return False


def _fts_url(base: str, path: str) -> str:
    scheme, _, rest = webdav.join_url(base, path).partition("://")
    return f"{SCHEMES.get(scheme, scheme)}://{rest}"


def _file_reasons(files: list[Mapping[str, Any]]) -> str:
    parts = [
        f"{posixpath.basename(str(f.get('dest_surl') or f.get('file_id')))}: "
        f"{clip(f.get('reason') or f.get('file_state'), 200)}"
        for f in files[:MAX_REASONS]
    ]
    if len(files) > MAX_REASONS:
        parts.append(f"and {len(files) - MAX_REASONS} more")
    return "; ".join(parts)


def _describe(response: httpx.Response) -> str:
    body = json_body(response)
    if isinstance(body, dict):
        text = body.get("message") or body.get("http_message") or body.get("http_status")
        status = body.get("status") or body.get("http_status") or response.status_code
        return clip(f"{status}: {text}")
    return f"{response.status_code} {response.reason_phrase}"


def _failure(response: httpx.Response, doing: str) -> DriverError:
    status = response.status_code
    reason = {
        400: Reason.INVALID_REQUEST,
        401: Reason.AUTHENTICATION_FAILED,
        403: Reason.AUTHENTICATION_FAILED,
        404: Reason.NOT_FOUND,
        419: Reason.AUTHENTICATION_FAILED,
    }.get(status, Reason.REMOTE_FAILED)
    return DriverError(reason, f"{SERVICE} {doing}: {_describe(response)}")
