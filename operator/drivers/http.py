"""HTTP plumbing shared by the drivers that talk to a service (FTS3, Rucio, FileSender).

One `ServiceClient` per run: bounded retries with exponential backoff for what is worth
retrying (network errors, 429, 502-504), and errors turned into `DriverError`s whose
messages name the service and the host, never a header, a query string or a body we sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from datatx_operator.drivers.base import DriverError, Reason

log = logging.getLogger(__name__)

# httpx logs every request URL at INFO; FileSender URLs carry signatures, keep them out.
logging.getLogger("httpx").setLevel(logging.WARNING)

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
# For a request that must not run twice (a submission): only what proves it was not handled.
UNHANDLED_STATUS = frozenset({429, 503})
UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
MAX_BACKOFF_SECONDS = 30.0


class ServiceClient:
    """An async HTTP client for one service, with bounded retries."""

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        retries: int,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 60.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.service = service
        self.host = urlsplit(base_url).hostname or base_url
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout_seconds,
            headers=dict(headers or {}),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        retry_status: Collection[int] = RETRYABLE_STATUS,
        sign: Callable[[], Mapping[str, str]] | None = None,
        idempotent: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request, retrying network errors and `retry_status` answers.

        A request that is not `idempotent` is sent again only when it surely was not
        handled (no connection, 429, 503), so that a submission never runs twice. `sign`
        makes the query parameters anew for each attempt (signatures that carry a
        timestamp). Returns the last answer, whatever its status; raises NETWORK_ERROR
        when the service could not be reached at all.
        """
        if not idempotent:
            retry_status = UNHANDLED_STATUS & set(retry_status)
        attempt = 0
        while True:
            if sign is not None:
                kwargs["params"] = sign()
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.TransportError as error:
                if attempt >= self.retries or not (idempotent or isinstance(error, UNSENT_ERRORS)):
                    raise DriverError(
                        Reason.NETWORK_ERROR,
                        f"{self.service} at {self.host} could not be reached after "
                        f"{attempt + 1} attempts ({type(error).__name__})",
                    ) from None
                log.warning("%s at %s: %s, retrying", self.service, self.host, type(error).__name__)
            else:
                if response.status_code not in retry_status or attempt >= self.retries:
                    return response
                log.warning(
                    "%s at %s answered %d, retrying",
                    self.service,
                    self.host,
                    response.status_code,
                )
            await asyncio.sleep(min(self.backoff_seconds * 2**attempt, MAX_BACKOFF_SECONDS))
            attempt += 1


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when the body is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def clip(text: object, limit: int = 300) -> str:
    """A remote's text, bounded so that one answer cannot flood a status message."""
    value = " ".join(str(text).split())
    return value if len(value) <= limit else value[: limit - 3] + "..."
