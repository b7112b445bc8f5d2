"""A small asyncio client for the Kubernetes API that speaks plain JSON dicts.

The node agent needs a dozen calls, a watch, and strategic-merge patches; plain dicts keep
it independent of any generated model classes.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

Json = dict[str, Any]

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class KubeError(Exception):
    """A non-2xx answer from the apiserver, with its Status reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Kube:
    """Client-certificate authenticated requests to one apiserver."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        self.server = server
        self._ssl = ssl.create_default_context(cafile=str(ca))
        self._ssl.load_cert_chain(str(cert), str(key))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        self._session = aiohttp.ClientSession(
            base_url=self.server,
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=20),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use `async with Kube(...)`")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Json | None = None,
        content_type: str = "application/json",
        seconds: float = 30,
    ) -> Json:
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        try:
            async with self.session.request(
                method,
                path,
                params=params,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            # One error type for callers: an unreachable apiserver is status 0.
            raise KubeError(0, "Unreachable", f"{method} {path}: {error!r}") from error
        if status >= 300:
            raise _error(status, text)
        result: Json = json.loads(text) if text else {}
        return result

    async def get(self, path: str, params: dict[str, str] | None = None) -> Json:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Json) -> Json:
        return await self.request("POST", path, body=body)

    async def patch(self, path: str, body: Json, content_type: str = STRATEGIC) -> Json:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def delete(self, path: str, body: Json | None = None) -> Json:
        return await self.request("DELETE", path, body=body)

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[Json]:
        """Events of one watch request until the server ends it; ERROR events raise."""
        query = {**params, "watch": "true"}
        async with self.session.get(
            path,
            params=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            read_bufsize=2**21,  # one event is one line; large objects must fit
        ) as response:
            if response.status >= 300:
                raise _error(response.status, await response.text())
            async for line in response.content:
                if not line.strip():
                    continue
                event: Json = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    raise KubeError(
                        int(status.get("code", 500)),
                        str(status.get("reason", "")),
                        str(status.get("message", "")),
                    )
                yield event


def _error(status: int, text: str) -> KubeError:
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        return KubeError(status, "", text.strip())
    return KubeError(status, str(body.get("reason", "")), str(body.get("message", "")))
