"""The bridge's few requests to the Kubernetes API, made on the event loop.

Creating a transfer is the bridge's hot path, so its writes (and the rare GET on a cache
miss) go straight to the API server's REST endpoints with aiohttp, without a thread hop
per call; the `kubernetes` client supplies the configuration (kubeconfig or in-cluster
ServiceAccount, with token refresh) and serves the cache's watch thread. API errors become
`BridgeError`s with short texts: an API server's error body is never passed on, since it
could echo what was sent.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes import client, config

from datatx_operator import api
from grpc_bridge.errors import BridgeError, FailedPreconditionError, NotFoundError, UnavailableError
from grpc_bridge.metrics import KUBE_REQUESTS

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)


class ConflictError(BridgeError):
    """409: the object exists already (create) or changed meanwhile (update)."""


class RejectedError(FailedPreconditionError):
    """422: the API server's validation (the CRD's one-way rules) refused a change."""


def configuration(kubeconfig: str | None) -> client.Configuration:
    """From the kubeconfig, or the in-cluster ServiceAccount when none is given."""
    settings = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=settings)
    else:
        config.load_incluster_config(client_configuration=settings)
    return settings


def _ssl_context(settings: client.Configuration) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ssl_ca_cert)
    if settings.cert_file:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    if not settings.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": name,
        "uid": uid,
        "controller": True,
    }


class Kube:
    def __init__(self, settings: client.Configuration, namespace: str, connections: int) -> None:
        self.namespace = namespace
        self._settings = settings
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        ns = quote(namespace, safe="")
        self._transfers = (
            f"{settings.host}/apis/{api.GROUP}/{api.VERSION}/namespaces/{ns}/{api.PLURAL}"
        )
        self._secrets = f"{settings.host}/api/v1/namespaces/{ns}/secrets"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=_ssl_context(self._settings), limit=self._connections
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(
        self,
        what: str,
        method: str,
        url: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        # As the kubernetes client does (and its refresh hook renews in-cluster tokens).
        authorization = self._settings.get_api_key_with_prefix("BearerToken", alias="authorization")
        if authorization:
            headers["Authorization"] = authorization
        data = None if body is None else json.dumps(body)
        try:
            async with self._client().request(method, url, data=data, headers=headers) as response:
                if response.status < 400:
                    KUBE_REQUESTS.labels(what, "ok").inc()
                    return await response.json()
                status, reason = response.status, response.reason
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            KUBE_REQUESTS.labels(what, "unreachable").inc()
            log.warning("kubernetes API unreachable for %s: %s", what, type(error).__name__)
            raise UnavailableError(f"{what}: the Kubernetes API is unreachable") from None
        KUBE_REQUESTS.labels(what, str(status)).inc()
        log.warning("kubernetes API refused %s: %s %s", what, status, reason)
        if status == 404:
            raise NotFoundError(f"{what}: not found")
        if status == 409:
            raise ConflictError(f"{what}: conflict")
        if status == 422:
            raise RejectedError(f"{what}: refused by validation")
        raise UnavailableError(f"{what}: the Kubernetes API answered {status}")

    def _transfer_url(self, name: str) -> str:
        return f"{self._transfers}/{quote(name, safe='')}"

    async def create_transfer(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._request(
            "create transfer", "POST", self._transfers, body
        )
        return created

    async def get_transfer(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._request(
                "get transfer", "GET", self._transfer_url(name)
            )
        except NotFoundError:
            return None
        return found

    async def patch_transfer_spec(
        self, name: str, spec: dict[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch the spec; with `resource_version`, only if nothing changed since."""
        body: dict[str, Any] = {"spec": spec}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        patched: dict[str, Any] = await self._request(
            "update transfer", "PATCH", self._transfer_url(name), body, content_type=MERGE_PATCH
        )
        return patched

    async def create_secret(
        self, name: str, data: Mapping[str, str], *, transfer: str, transfer_uid: str
    ) -> None:
        """An immutable Secret owned by the transfer; raise `ConflictError` if it exists."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "immutable": True,
            "metadata": {
                "name": name,
                "labels": {api.LABEL_TRANSFER: transfer, api.LABEL_MANAGED_BY: api.MANAGED_BY},
                "ownerReferences": [owner_reference(transfer, transfer_uid)],
            },
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
        }
        await self._request("store secret", "POST", self._secrets, body)

    async def delete_secret(self, name: str) -> None:
        await self._request("delete secret", "DELETE", f"{self._secrets}/{quote(name, safe='')}")
