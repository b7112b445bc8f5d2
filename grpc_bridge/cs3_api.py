"""The CS3 API, `cs3.tx.v1beta1.TxAPI`, wire-compatible with reva's clients.

As CS3 services do, every outcome is reported in band: the gRPC call succeeds and
`status.code` says what happened (CODE_OK, CODE_INVALID_ARGUMENT naming the field, ...).
CancelTransfer answers CODE_OK only when the operator confirmed the stop; a cancel the
remote side refused is CODE_ABORTED and a stop not confirmed in time CODE_DEADLINE_EXCEEDED,
both with the transfer status CANCEL_FAILED.

ListTransfers filters: filters of the same type combine with OR, filters of different types
with AND (status IN (...) AND share id IN (...) AND id IN (...)); no filter: all the
caller's transfers. A filter whose term does not match its type is CODE_INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from cs3.rpc.v1beta1 import code_pb2, status_pb2
from cs3.tx.v1beta1 import resources_pb2 as cs3_tx
from cs3.tx.v1beta1 import tx_api_pb2 as tx
from cs3.tx.v1beta1 import tx_api_pb2_grpc as tx_grpc

from grpc_bridge import cs3_uris
from grpc_bridge.auth import Authenticator, Principal
from grpc_bridge.drafts import build_draft
from grpc_bridge.errors import BridgeError, FailedPreconditionError, InvalidArgumentError
from grpc_bridge.mapping import cs3_status, tx_info
from grpc_bridge.records import TransferRecord
from grpc_bridge.transfers import Stop, Transfers, check_transfer_id

Context = grpc.aio.ServicerContext[Any, Any]
MAX_FILTERS = 100
MAX_LISTED = 10_000
MAX_SHARE_ID = 256
FILTER_TERMS = {
    tx.ListTransfersRequest.Filter.TYPE_STATUS: "status",
    tx.ListTransfersRequest.Filter.TYPE_SHARE_ID: "share_id",
    tx.ListTransfersRequest.Filter.TYPE_TX_ID: "tx_id",
}
STOP_CODES = {
    Stop.CANCELLED: "CODE_OK",
    Stop.ENDED: "CODE_FAILED_PRECONDITION",
    Stop.CANCEL_FAILED: "CODE_ABORTED",
    Stop.TIMED_OUT: "CODE_DEADLINE_EXCEEDED",
}


def rpc_status(code_name: str, message: str = "") -> Any:
    return status_pb2.Status(code=code_pb2.Code.Value(code_name), message=message)


async def _in_band(response_type: Callable[..., Any], call: Awaitable[Any]) -> Any:
    """The call's response; a BridgeError becomes a response carrying only its status."""
    try:
        return await call
    except BridgeError as error:
        return response_type(status=rpc_status(error.cs3_code_name, error.message))


def _opaque(request: Any) -> dict[str, tuple[str, bytes]]:
    entries = request.opaque.map
    return {
        key: (entries[key].decoder, entries[key].value)
        for key in cs3_uris.OPAQUE_KEYS
        if key in entries
    }


def _tx_id(request: Any) -> str:
    if not request.HasField("tx_id"):
        raise InvalidArgumentError("tx_id", "required")
    return check_transfer_id(request.tx_id.opaque_id, "tx_id.opaque_id")


def _share_id(request: Any) -> str | None:
    if not request.HasField("share_id"):
        return None
    value = str(request.share_id.opaque_id)
    if len(value) > MAX_SHARE_ID or not value.isprintable():
        raise InvalidArgumentError(
            "share_id.opaque_id", f"at most {MAX_SHARE_ID} printable characters"
        )
    return value or None


def _list_filter(request: Any) -> Callable[[TransferRecord], bool]:
    if len(request.filters) > MAX_FILTERS:
        raise InvalidArgumentError("filters", f"at most {MAX_FILTERS}")
    statuses: set[int] = set()
    share_ids: set[str] = set()
    tx_ids: set[str] = set()
    for index, item in enumerate(request.filters):
        term = FILTER_TERMS.get(item.type)
        if term is None:
            raise InvalidArgumentError(
                f"filters[{index}].type", "must be TYPE_STATUS, TYPE_SHARE_ID or TYPE_TX_ID"
            )
        if item.WhichOneof("term") != term:
            raise InvalidArgumentError(
                f"filters[{index}]", f"a filter of this type needs the {term} term"
            )
        if term == "status":
            if item.status not in cs3_tx.Status.values():
                raise InvalidArgumentError(f"filters[{index}].status", "not a transfer status")
            statuses.add(item.status)
        elif term == "share_id":
            share_ids.add(item.share_id.opaque_id)
        else:
            tx_ids.add(item.tx_id.opaque_id)

    def matches(record: TransferRecord) -> bool:
        return (
            (not statuses or cs3_status(record) in statuses)
            and (not share_ids or record.share_id in share_ids)
            and (not tx_ids or record.name in tx_ids)
        )

    return matches


class Cs3TxService(tx_grpc.TxAPIServicer):  # type: ignore[misc]
    def __init__(self, transfers: Transfers, auth: Authenticator) -> None:
        self._transfers = transfers
        self._auth = auth

    def _principal(self, context: Context) -> Principal:
        return self._auth.authenticate(context.invocation_metadata())

    async def CreateTransfer(self, request: Any, context: Context) -> Any:
        async def call() -> Any:
            principal = self._principal(context)
            data = cs3_uris.request_data(
                request.src_target_uri, request.dest_target_uri, _opaque(request)
            )
            share_id = _share_id(request)
            draft = build_draft(data, principal, cs3_uris.cs3_field)
            record, _ = await self._transfers.create(principal, draft, share_id=share_id)
            return tx.CreateTransferResponse(status=rpc_status("CODE_OK"), tx_info=tx_info(record))

        return await _in_band(tx.CreateTransferResponse, call())

    async def GetTransferStatus(self, request: Any, context: Context) -> Any:
        async def call() -> Any:
            principal = self._principal(context)
            record = await self._transfers.get(principal, _tx_id(request))
            return tx.GetTransferStatusResponse(
                status=rpc_status("CODE_OK"), tx_info=tx_info(record)
            )

        return await _in_band(tx.GetTransferStatusResponse, call())

    async def CancelTransfer(self, request: Any, context: Context) -> Any:
        async def call() -> Any:
            principal = self._principal(context)
            outcome = await self._transfers.cancel(principal, _tx_id(request), destroy=False)
            status = None
            if outcome.stop in (Stop.CANCEL_FAILED, Stop.TIMED_OUT):
                status = int(cs3_tx.STATUS_TRANSFER_CANCEL_FAILED)
            return tx.CancelTransferResponse(
                status=rpc_status(STOP_CODES[outcome.stop], outcome.text),
                tx_info=tx_info(outcome.record, status=status),
            )

        return await _in_band(tx.CancelTransferResponse, call())

    async def RetryTransfer(self, request: Any, context: Context) -> Any:
        async def call() -> Any:
            principal = self._principal(context)
            try:
                record = await self._transfers.retry(principal, _tx_id(request))
            except FailedPreconditionError as error:
                current = await self._transfers.get(principal, _tx_id(request))
                return tx.RetryTransferResponse(
                    status=rpc_status(error.cs3_code_name, error.message), tx_info=tx_info(current)
                )
            return tx.RetryTransferResponse(
                status=rpc_status("CODE_OK"),
                tx_info=tx_info(
                    record,
                    status=int(cs3_tx.STATUS_TRANSFER_NEW),
                    text=f"retry requested (run {record.restarts})",
                ),
            )

        return await _in_band(tx.RetryTransferResponse, call())

    async def ListTransfers(self, request: Any, context: Context) -> Any:
        async def call() -> Any:
            principal = self._principal(context)
            matches = _list_filter(request)
            records = [record for record in self._transfers.visible(principal) if matches(record)]
            message = f"only the first {MAX_LISTED} shown" if len(records) > MAX_LISTED else ""
            return tx.ListTransfersResponse(
                status=rpc_status("CODE_OK", message),
                transfers=[tx_info(record) for record in records[:MAX_LISTED]],
            )

        return await _in_band(tx.ListTransfersResponse, call())
