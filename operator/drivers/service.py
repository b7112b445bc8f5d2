"""What the drivers that talk to a remote service (FTS3, Rucio, FileSender) have in common.

One HTTP client per run, closed when the run ends; `cancel()` uses a client of its own,
because `wait()` may close the run's client while a cancel is on its way. `_lock` orders a
submission against a cancel, so that a cancel never misses a job being created.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
from typing import ClassVar, Protocol

from datatx_operator.drivers.base import Driver, DriverError, Outcome, RunContext
from datatx_operator.drivers.http import ServiceClient
from datatx_operator.models import Progress, Result


class ServiceOptions(Protocol):
    @property
    def endpoint(self) -> str: ...

    @property
    def request_retries(self) -> int: ...


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ServiceDriver(Driver):
    service: ClassVar[str]

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.backoff_seconds = 1.0
        self._client: ServiceClient | None = None
        self._progress = Progress()
        self._stop = asyncio.Event()
        self._cancelled = False
        self._lock = asyncio.Lock()

    @property
    @abc.abstractmethod
    def options(self) -> ServiceOptions:
        """The driver's options from the spec."""

    def _headers(self) -> dict[str, str]:
        """Headers every request of the run carries."""
        return {}

    def _new_client(self) -> ServiceClient:
        return ServiceClient(
            self.service,
            self.options.endpoint,
            retries=self.options.request_retries,
            backoff_seconds=self.backoff_seconds,
            headers=self._headers(),
        )

    def _service(self) -> ServiceClient:
        """The run's client."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def progress(self) -> Progress:
        return self._progress

    async def wait(self) -> Outcome:
        try:
            return await self._follow()
        except DriverError as error:
            return await self._failed(error)
        finally:
            await self._close()

    @abc.abstractmethod
    async def _follow(self) -> Outcome:
        """See the remote work through to its end."""

    async def _failed(self, error: DriverError) -> Outcome:
        return Outcome(error.reason, error.message, self._result())

    @abc.abstractmethod
    def _result(self, errors: int = 0) -> Result:
        """The figures so far, as a result."""
