"""gRPC health checking (`grpc.health.v1.Health`) that lets a graceful stop drain.

grpc_health's reference servicer keeps every Watch stream open until the server cancels
it, so one open watch (a client-side health check, a load balancer) held each graceful
stop for the whole grace period. Here a watch reports NOT_SERVING when the stop begins and
then ends, like every other call in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from functools import partial
from typing import Any, TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
Status: TypeAlias = health_pb2.HealthCheckResponse.ServingStatus.ValueType
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    def __init__(self, services: Iterable[str]) -> None:
        self._status: dict[str, Status] = dict.fromkeys(services, NOT_SERVING)
        self._changed = asyncio.Condition()
        self._stopping = False

    def status(self, service: str) -> Status:
        return self._status.get(service, SERVICE_UNKNOWN)

    async def set(self, service: str, status: Status) -> None:
        """Ignored once a graceful stop began: NOT_SERVING is final then."""
        if self._stopping:
            return
        async with self._changed:
            self._status[service] = status
            self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        async with self._changed:
            self._stopping = True
            self._status = dict.fromkeys(self._status, NOT_SERVING)
            self._changed.notify_all()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in self._status:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return health_pb2.HealthCheckResponse(status=self._status[request.service])

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Context) -> None:
        """The status now and after each change; ends once a graceful stop was reported."""
        sent: Status | None = None
        while True:
            status = self.status(request.service)
            if status != sent:
                await context.write(health_pb2.HealthCheckResponse(status=status))
                sent = status
            if self._stopping:
                return
            async with self._changed:
                await self._changed.wait_for(partial(self._moved_on, request.service, sent))

    def _moved_on(self, service: str, sent: Status) -> bool:
        return self._stopping or self.status(service) != sent
