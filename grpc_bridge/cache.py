"""One watch-fed cache of the namespace's DataTransfers per bridge process.

A thread lists and then watches the CRs (the `kubernetes` client is synchronous) and hands
every change to the event loop, which alone mutates the cache: no locks on the read path.
The watch resumes from the last resourceVersion (bookmarks keep it fresh) and relists when
the server answers 410 Gone. Writes put their response objects in at once, so a caller
reads its own writes even before the watch delivers them. Indexed by name and by owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from datatx_operator import api
from grpc_bridge.metrics import KUBE_REQUESTS
from grpc_bridge.records import TransferRecord

log = logging.getLogger(__name__)

LIST_PAGE = 500


class _GoneError(Exception):
    """The watch's resourceVersion is too old: relist."""


class TransferCache:
    def __init__(
        self, api_client: client.ApiClient, namespace: str, *, watch_timeout_seconds: int = 60
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._watch_timeout = watch_timeout_seconds
        self._by_name: dict[str, TransferRecord] = {}
        self._by_owner: dict[str, dict[str, TransferRecord]] = {}
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self.synced = asyncio.Event()

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="datatx-cache", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
        self.wake_all()

    # -- reads (event loop only) ------------------------------------------------------

    def get(self, name: str) -> TransferRecord | None:
        return self._by_name.get(name)

    def owned_by(self, owner_key: str) -> list[TransferRecord]:
        return list(self._by_owner.get(owner_key, {}).values())

    def all(self) -> list[TransferRecord]:
        return list(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def put(self, obj: dict[str, Any]) -> TransferRecord:
        """Read-your-writes: the object a write returned, unless the cache has a newer one."""
        return self._upsert(TransferRecord.from_object(obj))

    @contextlib.contextmanager
    def subscribe(self, name: str) -> Iterator[asyncio.Event]:
        """An event set whenever the transfer `name` changes or goes (and on shutdown)."""
        event = asyncio.Event()
        self._waiters.setdefault(name, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(name)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[name]

    def wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    # -- mutations (event loop only) --------------------------------------------------

    def _upsert(self, record: TransferRecord) -> TransferRecord:
        current = self._by_name.get(record.name)
        if current is not None and not record.supersedes(current):
            return current
        if current is not None and current.owner_key != record.owner_key:
            self._by_owner.get(current.owner_key, {}).pop(record.name, None)
        self._by_name[record.name] = record
        self._by_owner.setdefault(record.owner_key, {})[record.name] = record
        self._notify(record.name)
        return record

    def _delete(self, name: str) -> None:
        current = self._by_name.pop(name, None)
        if current is not None:
            owned = self._by_owner.get(current.owner_key, {})
            owned.pop(name, None)
            if not owned:
                self._by_owner.pop(current.owner_key, None)
        self._notify(name)

    def _replace(self, records: list[TransferRecord]) -> None:
        listed = {record.name for record in records}
        for name in [name for name in self._by_name if name not in listed]:
            self._delete(name)
        for record in records:
            self._upsert(record)
        self.synced.set()

    def _notify(self, name: str) -> None:
        for event in self._waiters.get(name, ()):
            event.set()

    # -- the watch thread -------------------------------------------------------------

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed while we stopped
            self._loop.call_soon_threadsafe(function, *args)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                version = self._relist()
                backoff = 0.5
                while not self._stopping.is_set():
                    version = self._watch(version)
            except _GoneError:
                log.info("watch expired (410 Gone); relisting")
            except Exception as error:
                if self._stopping.is_set():
                    break
                log.warning("watch of DataTransfers failed (%s); retrying", type(error).__name__)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _known(self, name: str, version: str) -> bool:
        """Already cached at this version (put there by the bridge's own write): skip the
        parse, which would only compete with the write's caller for the GIL."""
        current = self._by_name.get(name)
        return current is not None and current.resource_version == version

    def _relist(self) -> str:
        records: list[TransferRecord] = []
        token: str | None = None
        while True:
            try:
                page: dict[str, Any] = self._api.list_namespaced_custom_object(  # type: ignore[assignment]
                    api.GROUP,
                    api.VERSION,
                    self._namespace,
                    api.PLURAL,
                    limit=LIST_PAGE,
                    _continue=token,
                    _request_timeout=60,
                )
            except ApiException as error:  # e.g. 403 while RBAC is missing: retried
                KUBE_REQUESTS.labels("list transfers", str(error.status)).inc()
                raise
            KUBE_REQUESTS.labels("list transfers", "ok").inc()
            records.extend(TransferRecord.from_object(item) for item in page.get("items", []))
            token = page.get("metadata", {}).get("continue")
            if not token:
                version = str(page["metadata"]["resourceVersion"])
                break
        self._call(self._replace, records)
        log.info("cache listed %d transfers at resourceVersion %s", len(records), version)
        return version

    def _watch(self, version: str) -> str:
        try:
            response: Any = self._api.list_namespaced_custom_object(
                api.GROUP,
                api.VERSION,
                self._namespace,
                api.PLURAL,
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout,
                _preload_content=False,
                _request_timeout=(10, self._watch_timeout + 30),
            )
        except ApiException as error:
            KUBE_REQUESTS.labels("watch transfers", str(error.status)).inc()
            if error.status == 410:
                raise _GoneError from error
            raise
        KUBE_REQUESTS.labels("watch transfers", "ok").inc()
        self._response = response
        try:
            for line in iter_resp_lines(response):
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _GoneError
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('reason')}")
                version = str(obj.get("metadata", {}).get("resourceVersion", version))
                if kind == "BOOKMARK":
                    continue
                name = obj.get("metadata", {}).get("name", "")
                if kind == "DELETED":
                    self._call(self._delete, name)
                elif not self._known(name, version):
                    self._call(self._upsert, TransferRecord.from_object(obj))
        finally:
            self._response = None
            response.release_conn()
        return version
