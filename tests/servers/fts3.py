"""An FTS3 REST server for tests, answering as the captured FTS3 3.13.4 responses do.

No FTS3 server can be installed here (see ../shared/reference/fts3/FACTS.md), so this one
reproduces the recorded answers: the job and file objects with every field the real server
returns, `POST /jobs` -> `{"job_id"}`, 400 for `file://` URLs, 404 with `http_message` for an
unknown job, `DELETE` of an active job -> `CANCELED`, of a terminal job -> HTTP 200 with
`"http_status": "304 Not Modified"` in the body. The reference records no answer to a
missing or rejected token, nor to a body that is not JSON: for those this server answers
401, 403 and 400 in the shape of the recorded 400 (`{"status", "message"}`) with texts of
its own, and tests must assert no more of them than the status code.

It moves no bytes. Tests drive the jobs: each `plan` gives the end state (and reason) of the
files of the next job; every GET of a job moves one more file to its end state, and a job
in `hold` stays ACTIVE until cancelled. It runs on its own thread, so that it also answers
a mover running in another process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import socket
import threading
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

HOST = "127.0.0.1"
ACTIVE_STATES = frozenset({"STAGING", "SUBMITTED", "READY", "ACTIVE", "DELETE", "ARCHIVING"})
VERIFY = {"both": "b", "source": "s", "target": "t", "none": "n"}
CANCEL_REASON = "Job canceled by the user"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _se(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Plan:
    """How the files of one job end: a state per file (cycled) and the reasons."""

    states: list[str] = field(default_factory=lambda: ["FINISHED"])
    reasons: dict[int, str] = field(default_factory=dict)
    job_reason: str | None = None


@dataclass
class Job:
    fields: dict[str, Any]
    files: list[dict[str, Any]]
    ends: list[tuple[str, str | None]]
    hold: bool = False

    @property
    def state(self) -> str:
        return str(self.fields["job_state"])


class FtsServer:
    """The server's state; the test thread and the server thread share it under a lock."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        self.plans: list[Plan] = []
        self.hold = False
        self.fail_next: list[int] = []  # statuses answered (once each) before real answers
        self.requests: list[tuple[str, str, str]] = []  # method, path, Authorization
        self.port = 0
        self._next_file_id = 8872390197
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def plan(self, *states: str, reasons: dict[int, str] | None = None) -> None:
        """The end states of the files of the next submitted job."""
        with self.lock:
            self.plans.append(Plan(list(states), reasons or {}))

    def job(self, job_id: str) -> Job:
        with self.lock:
            return self.jobs[job_id]

    # -- HTTP ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/jobs", self._submit)
        app.router.add_get("/jobs/{job_id}", self._get)
        app.router.add_get("/jobs/{job_id}/files", self._files)
        app.router.add_delete("/jobs/{job_id}", self._cancel)
        app.router.add_get("/api", self._api)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        with self.lock:
            self.requests.append((request.method, request.path, header))
            injected = self.fail_next.pop(0) if self.fail_next else None
        if injected is not None:
            return _error(injected, HTTPStatus(injected).phrase, "injected failure")
        # Not in the reference (no 401/403 was recorded): shape of the recorded 400, own text.
        if not header.startswith("Bearer "):
            return _error(401, "Unauthorized", "A valid X509 certificate or proxy is needed")
        if header.removeprefix("Bearer ") != self.token:
            return _error(403, "Forbidden", "Invalid credentials (Invalid OAuth2 credentials)")
        response: web.StreamResponse = await handler(request)
        return response

    async def _api(self, request: web.Request) -> web.Response:
        return _json({"major": 3, "minor": 13, "patch": 4})

    async def _submit(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
            files = body["files"]
            params = body.get("params", {})
            if not isinstance(files, list) or not files:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            # Not in the reference (only the file:// 400 was recorded): the text is our own.
            return _error(400, "Bad Request", "Badly formatted JSON request")
        for entry in files:
            for url in [*entry.get("sources", []), *entry.get("destinations", [])]:
                if url.startswith("file://"):
                    return _error(
                        400,
                        "Bad Request",
                        f"Invalid value within the request: Can not transfer local files ({url})",
                    )
        with self.lock:
            plan = self.plans.pop(0) if self.plans else Plan()
            job_id = str(uuid.uuid1())
            job = self._new_job(job_id, files, params, plan)
            self.jobs[job_id] = job
        return _json({"job_id": job_id})

    def _new_job(
        self, job_id: str, files: list[dict[str, Any]], params: dict[str, Any], plan: Plan
    ) -> Job:
        first = files[0]
        metadata = dict(params.get("job_metadata") or {})
        metadata["auth_method"] = "oauth2"
        fields = {
            "archive_timeout": -1,
            "bring_online": -1,
            "cancel_job": False,
            "copy_pin_lifetime": -1,
            "cred_id": "8076af0d72011db4",
            "dest_se": _se(first["destinations"][0]),
            "destination_spacetoken": None,
            "dst_file_report": False,
            "http_status": "200 Ok",
            "internal_job_params": "nostreams:1",
            "job_finished": None,
            "job_id": job_id,
            "job_metadata": metadata,
            "job_state": "SUBMITTED",
            "job_type": "N",
            "max_time_in_queue": None,
            "os_project_id": None,
            "overwrite_flag": "Y" if params.get("overwrite") else "N",
            "priority": int(params.get("priority", 3)),
            "reason": None,
            "retry": int(params.get("retry", 0)),
            "retry_delay": 0,
            "source_se": _se(first["sources"][0]),
            "source_spacetoken": None,
            "submit_host": "localhost",
            "submit_time": _now(),
            "target_qos": None,
            "user_dn": "driver-test-subject",
            "verify_checksum": VERIFY.get(str(params.get("verify_checksum", "both")), "b"),
            "vo_name": "testvo",
        }
        records = []
        ends = []
        for index, entry in enumerate(files):
            source, destination = entry["sources"][0], entry["destinations"][0]
            records.append(
                {
                    "activity": "default",
                    "archive_finish_time": None,
                    "archive_metadata": None,
                    "archive_start_time": None,
                    "bringonline_token": None,
                    "checksum": entry.get("checksum", "ADLER32"),
                    "dest_se": _se(destination),
                    "dest_surl": destination,
                    "dest_surl_uuid": None,
                    "dst_token_id": None,
                    "file_id": self._next_file_id,
                    "file_index": index,
                    "file_metadata": entry.get("metadata"),
                    "file_state": "SUBMITTED",
                    "file_state_initial": "",
                    "filesize": None,
                    "finish_time": None,
                    "hashed_id": zlib.crc32(destination.encode()) % 65536,
                    "internal_file_params": None,
                    "job_id": job_id,
                    "log_debug": None,
                    "log_file": None,
                    "pid": None,
                    "priority": fields["priority"],
                    "reason": None,
                    "recoverable": None,
                    "retry": 0,
                    "scitag": None,
                    "selection_strategy": "auto",
                    "source_se": _se(source),
                    "source_surl": source,
                    "src_token_id": None,
                    "staging_finished": None,
                    "staging_host": None,
                    "staging_metadata": None,
                    "staging_start": None,
                    "start_time": None,
                    "throughput": None,
                    "transfer_host": None,
                    "tx_duration": None,
                    "user_filesize": int(entry.get("filesize", 0)),
                    "vo_name": "testvo",
                }
            )
            self._next_file_id += 1
            ends.append((plan.states[index % len(plan.states)], plan.reasons.get(index)))
        return Job(fields, records, ends, hold=self.hold)

    def _advance(self, job: Job) -> None:
        """One step of the job's life: the next file reaches its planned end."""
        if job.state not in ACTIVE_STATES or job.hold:
            if job.hold and job.state == "SUBMITTED":
                job.fields["job_state"] = "ACTIVE"
                for record in job.files:
                    record["file_state"] = "ACTIVE"
                    record["start_time"] = _now()
            return
        if job.state == "SUBMITTED":
            job.fields["job_state"] = "ACTIVE"
            for record in job.files:
                record["file_state"] = "ACTIVE"
                record["start_time"] = _now()
            return
        for record, (end, reason) in zip(job.files, job.ends, strict=True):
            if record["file_state"] == "ACTIVE":
                record["file_state"] = end
                record["reason"] = reason
                record["finish_time"] = _now()
                if end == "FINISHED":
                    record["filesize"] = record["user_filesize"]
                    record["throughput"] = 12.5
                    record["tx_duration"] = 0.08
                break
        states = {record["file_state"] for record in job.files}
        if states & ACTIVE_STATES:
            return
        if states == {"FINISHED"}:
            job.fields["job_state"] = "FINISHED"
        elif "FINISHED" in states:
            job.fields["job_state"] = "FINISHEDDIRTY"
        else:
            job.fields["job_state"] = "FAILED"
            job.fields["reason"] = "One or more files failed. Please have a look at the details"
        job.fields["job_finished"] = _now()

    def _lookup(self, request: web.Request) -> Job | None:
        return self.jobs.get(request.match_info["job_id"])

    async def _get(self, request: web.Request) -> web.Response:
        with self.lock:
            job = self._lookup(request)
            if job is None:
                return _missing(request.match_info["job_id"])
            self._advance(job)
            body = dict(job.fields)
            wanted = request.query.get("files")
            if wanted:
                names = wanted.split(",")
                body["files"] = [
                    {name: record[name] for name in names if name in record} for record in job.files
                ]
        return _json(body)

    async def _files(self, request: web.Request) -> web.Response:
        with self.lock:
            job = self._lookup(request)
            if job is None:
                return _missing(request.match_info["job_id"])
            return _json([dict(record) for record in job.files])

    async def _cancel(self, request: web.Request) -> web.Response:
        with self.lock:
            job = self._lookup(request)
            if job is None:
                return _missing(request.match_info["job_id"])
            if job.state not in ACTIVE_STATES:
                rest = {k: v for k, v in job.fields.items() if k != "http_status"}
                return _json(
                    {
                        "http_status": "304 Not Modified",
                        "http_message": "The job is in a terminal state",
                        **rest,
                    }
                )
            job.fields.update(
                job_state="CANCELED", cancel_job=True, job_finished=_now(), reason=CANCEL_REASON
            )
            for record in job.files:
                if record["file_state"] in ACTIVE_STATES:
                    record.update(file_state="CANCELED", reason=CANCEL_REASON, finish_time=_now())
            return _json({**job.fields, "http_message": None})

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the FTS3 test server did not start")

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._runner = web.AppRunner(self.app(), access_log=None)
        loop.run_until_complete(self._runner.setup())
        sock = socket.socket()
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        loop.run_until_complete(web.SockSite(self._runner, sock).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _error(status: int, name: str, message: str) -> web.Response:
    return _json({"status": f"{status} {name}", "message": message}, status)


def _missing(job_id: str) -> web.Response:
    """The recorded 404 for an unknown job id, on every /jobs/{id} endpoint."""
    return _json(
        {
            "job_id": job_id,
            "http_status": "404 Not Found",
            "http_message": f'No job with the id "{job_id}" has been found',
        },
        404,
    )


@pytest.fixture
def fts3_server() -> Iterator[FtsServer]:
    """A fresh FTS3 REST server on a free port of 127.0.0.1, with its own bearer token."""
    server = FtsServer(token=secrets.token_urlsafe(24))
    server.start()
    try:
        yield server
    finally:
        server.stop()
