"""Failures a caller can act on, independent of the API that reports them.

The seed API turns them into gRPC status codes, the CS3 API into in-band
`cs3.rpc.v1beta1.Code`s. Their messages are shown to callers and logged, so they never
contain secrets (nor the values of request fields, which may hold secrets).
"""

from __future__ import annotations

import grpc


class BridgeError(Exception):
    grpc_code = grpc.StatusCode.UNKNOWN
    cs3_code_name = "CODE_UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(BridgeError):
    """A request field is bad; nothing was created or changed."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    cs3_code_name = "CODE_INVALID_ARGUMENT"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnauthenticatedError(BridgeError):
    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    cs3_code_name = "CODE_UNAUTHENTICATED"


class PermissionDeniedError(BridgeError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    cs3_code_name = "CODE_PERMISSION_DENIED"


class NotFoundError(BridgeError):
    """Also what a caller gets for another user's transfer: its existence is not revealed."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    cs3_code_name = "CODE_NOT_FOUND"


class AlreadyExistsError(BridgeError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    cs3_code_name = "CODE_ALREADY_EXISTS"


class FailedPreconditionError(BridgeError):
    """The transfer is not in a state that allows the call (e.g. invite already answered)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    cs3_code_name = "CODE_FAILED_PRECONDITION"


class UnavailableError(BridgeError):
    """The Kubernetes API could not be reached or refused; the call may be retried."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    cs3_code_name = "CODE_UNAVAILABLE"
