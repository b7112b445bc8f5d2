"""The bridge's seed API over gRPC, with the login as call metadata and failures turned
into `CliError`s."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc

from datatx.v1 import datatx_pb2 as pb
from datatx.v1 import datatx_pb2_grpc as pb_grpc
from datatx_cli.config import ClientSettings
from datatx_cli.errors import CliError, ExitCode, from_rpc

Reply = TypeVar("Reply")


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise CliError(f"{what} {path}: {error.strerror}", ExitCode.BAD_INPUT) from None


def _channel(settings: ClientSettings) -> grpc.Channel:
    if not settings.secure:
        return grpc.insecure_channel(settings.address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.ca_file, "CA file"),
        private_key=_read(settings.client_key_file, "client key file"),
        certificate_chain=_read(settings.client_cert_file, "client certificate file"),
    )
    return grpc.secure_channel(settings.address, credentials)


class Bridge:
    """One connection to the bridge. `login=False`: calls that need none (invite answers)."""

    def __init__(self, settings: ClientSettings, *, login: bool = True) -> None:
        self.settings = settings
        token = settings.bearer() if login else None
        if login and token is None:
            raise CliError(
                "not logged in: set DATATX_TOKEN or DATATX_TOKEN_FILE, or token_file in the "
                "config file",
                ExitCode.DENIED,
            )
        self._metadata: tuple[tuple[str, str | bytes], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._channel = _channel(settings)
        self.stub = pb_grpc.DataTxStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def call(self, method: Callable[..., Reply], request: Any) -> Reply:
        try:
            return method(request, metadata=self._metadata, timeout=self.settings.timeout)
        except grpc.RpcError as error:
            raise from_rpc(error, self.settings.address) from None

    def watch(self, transfer_id: str) -> Iterator[pb.Transfer]:
        """The transfer's states until it ends (no deadline: a transfer may take days)."""
        request = pb.WatchTransferRequest(transfer_id=transfer_id)
        try:
            yield from self.stub.WatchTransfer(request, metadata=self._metadata)
        except grpc.RpcError as error:
            raise from_rpc(error, self.settings.address) from None

    def list_all(self, request: pb.ListTransfersRequest, limit: int) -> list[pb.Transfer]:
        """Page through ListTransfers up to `limit` transfers (oldest first)."""
        found: list[pb.Transfer] = []
        while len(found) < limit:
            request.page_size = min(1000, limit - len(found))
            page = self.call(self.stub.ListTransfers, request)
            found.extend(page.transfers)
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
        return found
