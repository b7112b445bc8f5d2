"""What every call gets, whatever its service: undecodable requests become
INVALID_ARGUMENT (not grpc's INTERNAL "Exception deserializing request!"), and each call
is timed, counted by outcome and logged as one JSON line (method, outcome, duration; never
the request or its metadata).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from cs3.rpc.v1beta1 import code_pb2, status_pb2

from grpc_bridge.metrics import CALLS, LATENCY

log = logging.getLogger("grpc_bridge.access")

Context = grpc.aio.ServicerContext[Any, Any]
UNDECODABLE = object()
UNDECODABLE_TEXT = "request: not a valid protobuf message for this method"


def _outcome(context: Context, response: Any = None) -> str:
    status = getattr(response, "status", None)
    if isinstance(status, status_pb2.Status):
        return str(code_pb2.Code.Name(status.code))
    return str(getattr(context.code(), "name", "OK"))  # None until the call fails


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return UNDECODABLE

    return decode


def _record(method: str, code: str, started: float) -> None:
    elapsed = time.perf_counter() - started
    CALLS.labels(method, code).inc()
    LATENCY.labels(method).observe(elapsed)
    extra = {"method": method, "code": code, "duration_ms": round(elapsed * 1000, 3)}
    log.info("%s %s", method, code, extra=extra)


def _unary(method: str, behaviour: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: Context) -> Any:
        started = time.perf_counter()
        code = "UNKNOWN"
        try:
            if request is UNDECODABLE:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE_TEXT)
            response = behaviour(request, context)
            if inspect.isawaitable(response):
                response = await response
            code = _outcome(context, response)
            return response
        except BaseException:
            code = _outcome(context)
            raise
        finally:
            _record(method, code, started)

    return wrapped


def _stream(method: str, behaviour: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
    async def wrapped(request: Any, context: Context) -> AsyncIterator[Any]:
        started = time.perf_counter()
        code = "UNKNOWN"
        try:
            if request is UNDECODABLE:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE_TEXT)
            async for response in behaviour(request, context):
                yield response
            code = _outcome(context)
        except BaseException:
            code = _outcome(context)
            raise
        finally:
            _record(method, code, started)

    return wrapped


class CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps unary calls and async-generator streams; other handlers (reflection, the
    health Watch) pass through untouched."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:  # the handler, or None for an unknown method
        handler: Any = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(method, handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _stream(method, handler.unary_stream),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler
