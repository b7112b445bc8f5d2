"""One-line errors with exit codes that scripts can tell apart.

0 success; 1 the operation failed (a transfer ended unsuccessfully, the bridge refused);
2 bad input (ours or the server's INVALID_ARGUMENT); 3 the bridge cannot be reached;
4 not logged in or not allowed.
"""

from __future__ import annotations

from enum import IntEnum

import grpc


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    UNREACHABLE = 3
    DENIED = 4


class CliError(Exception):
    """Ends the command: `message` goes to stderr as one line, `code` is the exit status."""

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())
        self.code = code


_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT: ExitCode.BAD_INPUT,
    grpc.StatusCode.UNAVAILABLE: ExitCode.UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNREACHABLE,
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.DENIED,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.DENIED,
}


def from_rpc(error: grpc.RpcError, address: str) -> CliError:
    """The server's own words, prefixed with what kind of failure it was."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or code.name.lower()
    exit_code = _CODES.get(code, ExitCode.FAILED)
    if exit_code is ExitCode.UNREACHABLE:
        return CliError(f"cannot reach the bridge at {address}: {details}", exit_code)
    label = code.name.lower().replace("_", " ")
    return CliError(f"{label}: {details}", exit_code)
