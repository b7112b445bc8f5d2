"""The kubelet endpoints the apiserver calls: container logs (`kubectl logs`) and healthz.

HTTPS with the node's serving certificate; only the apiserver's kubelet-client certificate
(or a cluster admin's) signed by the cluster CA gets in.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from localcluster.nodeagent import logfiles
from localcluster.nodeagent.config import AgentConfig
from localcluster.nodeagent.runner import ContainerRunner

ALLOWED_NAMES = {"kube-apiserver-kubelet-client"}
ALLOWED_GROUPS = {"system:masters"}
FOLLOW_POLL_SECONDS = 0.2

RunnerLookup = Callable[[str, str, str], ContainerRunner | None]


def _subject(request: web.Request) -> dict[str, list[str]]:
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    fields: dict[str, list[str]] = {}
    for rdn in (peer or {}).get("subject", ()):
        for key, value in rdn:
            fields.setdefault(key, []).append(value)
    return fields


@web.middleware
async def _authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    subject = _subject(request)
    if not (
        ALLOWED_NAMES & set(subject.get("commonName", []))
        or ALLOWED_GROUPS & set(subject.get("organizationName", []))
    ):
        raise web.HTTPForbidden(text="forbidden: not the apiserver\n")
    return await handler(request)


class _Query:
    """The log options of kubelet's containerLogs endpoint."""

    def __init__(self, request: web.Request) -> None:
        query = request.query
        self.follow = query.get("follow") in ("true", "1")
        self.previous = query.get("previous") in ("true", "1")
        self.timestamps = query.get("timestamps") in ("true", "1")
        self.tail = int(query["tailLines"]) if "tailLines" in query else None
        self.limit = int(query["limitBytes"]) if "limitBytes" in query else None
        self.since: datetime.datetime | None = None
        if "sinceSeconds" in query:
            self.since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
                seconds=int(query["sinceSeconds"])
            )
        elif "sinceTime" in query:
            self.since = datetime.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))

    def keep(self, entry: logfiles.Entry) -> bool:
        return self.since is None or entry.moment >= self.since


def _entries(path: Path, query: _Query) -> tuple[list[logfiles.Entry], int]:
    """What is in the file now, filtered; and the offset to follow from."""
    with path.open("rb") as handle:
        raw = handle.read()
    complete = raw[: raw.rfind(b"\n") + 1]
    entries = [e for e in logfiles.parse(complete.splitlines()) if query.keep(e)]
    if query.tail is not None:
        entries = entries[-query.tail :] if query.tail > 0 else []
    return entries, len(complete)


def _new_entries(path: Path, offset: int) -> tuple[list[logfiles.Entry], int]:
    with path.open("rb") as handle:
        handle.seek(offset)
        raw = handle.read()
    complete = raw[: raw.rfind(b"\n") + 1]
    return list(logfiles.parse(complete.splitlines())), offset + len(complete)


def _chunks(entries: list[logfiles.Entry], query: _Query, budget: list[int]) -> Iterator[bytes]:
    for entry in entries:
        data = entry.render(query.timestamps)
        if query.limit is not None:
            data = data[: budget[0]]
            budget[0] -= len(data)
        if data:
            yield data


def make_app(lookup: RunnerLookup) -> web.Application:
    async def container_logs(request: web.Request) -> web.StreamResponse:
        info = request.match_info
        runner = lookup(info["namespace"], info["pod"], info["container"])
        if runner is None:
            raise web.HTTPNotFound(
                text=f"container {info['container']} of pod {info['namespace']}/{info['pod']}"
                " is not on this node\n"
            )
        query = _Query(request)
        run = runner.restart_count - 1 if query.previous else runner.restart_count
        path = runner.log_path(run)
        if run < 0 or not path.exists():
            what = "previous terminated" if query.previous else "running"
            raise web.HTTPBadRequest(
                text=f'container "{runner.name}" has no {what} log (state: {runner.state})\n'
            )
        budget = [query.limit if query.limit is not None else -1]
        entries, offset = _entries(path, query)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        for chunk in _chunks(entries, query, budget):
            await response.write(chunk)
        while query.follow and (query.limit is None or budget[0] > 0):
            still_writing = runner.writing(run)
            entries, offset = _new_entries(path, offset)
            for chunk in _chunks(entries, query, budget):
                await response.write(chunk)
            if not entries and not still_writing:
                break
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
        await response.write_eof()
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def unsupported(request: web.Request) -> web.Response:
        return web.Response(
            status=501, text=f"{request.path} is not served by the localcluster node agent\n"
        )

    app = web.Application(middlewares=[_authorize])
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", container_logs)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/{tail:.*}", unsupported)
    return app


async def start(config: AgentConfig, lookup: RunnerLookup) -> web.AppRunner:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(config.ca))
    context.load_cert_chain(str(config.serving_cert), str(config.serving_key))
    context.verify_mode = ssl.CERT_REQUIRED
    runner = web.AppRunner(make_app(lookup), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.port, ssl_context=context).start()
    return runner
