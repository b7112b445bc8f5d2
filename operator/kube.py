"""The few Kubernetes API calls the operator and the mover make beyond what kopf does.

Writes are idempotent so that a restarted operator can replay them: creating what exists
adopts it, deleting what is gone succeeds.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from kubernetes.aio import client, config
from kubernetes.aio.client.exceptions import ApiException

from datatx_operator import api

JsonDict = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"


async def connect() -> client.ApiClient:
    """In a pod: its service account; elsewhere: $KUBECONFIG (tests, development)."""
    configuration = client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        await config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def _absent_is_fine(error: ApiException) -> None:
    if error.status != 404:
        raise error


class Kube:
    """Async access to transfers and their children, as plain JSON dicts.

    The Batch and Core APIs are made on first use: importing their generated models takes
    about 0.6 s, which the mover (it only reads and patches its transfer) must not pay."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)

    @functools.cached_property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api_client)

    @functools.cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    def _json(self, obj: Any) -> JsonDict:
        result: JsonDict = self.api_client.sanitize_for_serialization(obj)
        return result

    async def get_transfer(self, namespace: str, name: str) -> JsonDict | None:
        try:
            body = await self.custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name
            )
        except ApiException as error:
            _absent_is_fine(error)
            return None
        return self._json(body)

    async def patch_status(self, namespace: str, name: str, status: JsonDict) -> None:
        """JSON merge patch of the status subresource; a vanished transfer is ignored."""
        try:
            await self.custom.patch_namespaced_custom_object_status(
                api.GROUP,
                api.VERSION,
                namespace,
                api.PLURAL,
                name,
                {"status": status},
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            _absent_is_fine(error)

    async def delete_transfer(self, namespace: str, name: str) -> None:
        try:
            await self.custom.delete_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name
            )
        except ApiException as error:
            _absent_is_fine(error)

    async def create_job(self, namespace: str, job: JsonDict) -> JsonDict:
        """Create the Job, or return the one a previous operator instance created."""
        try:
            created = await self.batch.create_namespaced_job(
                namespace, client.V1Job.model_validate(job)
            )
        except ApiException as error:
            if error.status != 409:
                raise
            created = await self.batch.read_namespaced_job(job["metadata"]["name"], namespace)
        return self._json(created)

    async def read_job(self, namespace: str, name: str) -> JsonDict | None:
        try:
            job = await self.batch.read_namespaced_job(name, namespace)
        except ApiException as error:
            _absent_is_fine(error)
            return None
        return self._json(job)

    async def delete_job(self, namespace: str, name: str) -> None:
        """Delete in the foreground: the Job object stays until its pods are gone."""
        try:
            await self.batch.delete_namespaced_job(name, namespace, propagation_policy="Foreground")
        except ApiException as error:
            _absent_is_fine(error)

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self.core.delete_namespaced_secret(name, namespace)
        except ApiException as error:
            _absent_is_fine(error)
