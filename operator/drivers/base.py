"""The interface every transfer mechanism implements, and what a run reports.

The mover (`datatx-mover`, one pod per attempt) drives one `Driver`: `start` it, read
`progress` every few seconds into the CR status, `cancel` it on SIGTERM, and `wait` for
its `Outcome`, which goes to the pod's termination message for the operator to read.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path

from datatx_operator.models import DataTransferSpec, Progress, Result


class Reason(StrEnum):
    """Why a run ended: machine-readable, CamelCase (Kubernetes reason convention)."""

    SUCCEEDED = "Succeeded"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    NOT_FOUND = "NotFound"
    NETWORK_ERROR = "NetworkError"
    REMOTE_FAILED = "RemoteFailed"
    PARTIAL_FAILURE = "PartialFailure"
    CHECKSUM_MISMATCH = "ChecksumMismatch"
    INVALID_REQUEST = "InvalidRequest"
    CANCELLED = "Cancelled"
    CANCEL_FAILED = "CancelFailed"
    INTERNAL_ERROR = "InternalError"


class ExitCode(IntEnum):
    """The mover's exit codes; the Job's podFailurePolicy fails the Job at once on the
    permanent ones instead of retrying them."""

    OK = 0
    RETRYABLE = 1
    PERMANENT = 2
    CANCELLED = 3


PERMANENT_REASONS = frozenset({Reason.INVALID_REQUEST, Reason.NOT_FOUND, Reason.CHECKSUM_MISMATCH})


@dataclass(frozen=True)
class Outcome:
    """How a run ended; serialised into the pod's termination message (no secrets)."""

    reason: Reason
    message: str = ""
    result: Result = field(default_factory=Result)

    @property
    def succeeded(self) -> bool:
        return self.reason is Reason.SUCCEEDED

    @property
    def exit_code(self) -> ExitCode:
        if self.succeeded:
            return ExitCode.OK
        if self.reason in (Reason.CANCELLED, Reason.CANCEL_FAILED):
            return ExitCode.CANCELLED
        if self.reason in PERMANENT_REASONS:
            return ExitCode.PERMANENT
        return ExitCode.RETRYABLE


class DriverError(Exception):
    """A failure with a reason a user can act on; its message must hold no secret."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class RunContext:
    """Everything a driver may use: the request, the mounted secret values, a scratch dir."""

    transfer: str
    namespace: str
    spec: DataTransferSpec
    secrets: Mapping[str, str]
    workdir: Path


class Driver(abc.ABC):
    """One transfer mechanism. Instances serve a single run."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin the work (spawn the copy, submit the remote job); raise DriverError."""

    @abc.abstractmethod
    async def progress(self) -> Progress:
        """The figures so far; cheap enough to call every few seconds."""

    @abc.abstractmethod
    async def wait(self) -> Outcome:
        """Block until the work ends and say how it ended."""

    @abc.abstractmethod
    async def cancel(self) -> bool:
        """Stop the work, remote side included; True only when it really stopped."""
