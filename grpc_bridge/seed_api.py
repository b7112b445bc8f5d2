"""The seed API, `datatx.v1.DataTx`: failures are gRPC status codes."""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from datatx.v1 import datatx_pb2 as pb
from datatx.v1 import datatx_pb2_grpc as pb_grpc
from datatx_operator.models import Driver
from grpc_bridge.auth import Authenticator, Principal
from grpc_bridge.drafts import build_draft
from grpc_bridge.errors import BridgeError, InvalidArgumentError, PermissionDeniedError
from grpc_bridge.mapping import PHASE_OF_SEED_STATUS, describe, seed_transfer
from grpc_bridge.records import TransferRecord
from grpc_bridge.transfers import Transfers, check_transfer_id

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_FILTER_VALUES = 32
MAX_SECONDS = 253402300799  # 9999-12-31T23:59:59Z
DRIVERS = {driver.value for driver in Driver}


async def _answer(context: Context, call: Awaitable[T]) -> T:
    """The call's result; a BridgeError ends the call with its status code and message."""
    try:
        return await call
    except BridgeError as error:
        await context.abort(error.grpc_code, error.message)


def _options(request: pb.DoTransferRequest) -> dict[str, Any] | None:
    if not request.HasField("options"):
        return None
    try:
        options: dict[str, Any] = json_format.MessageToDict(request.options)
    except (ValueError, TypeError):
        raise InvalidArgumentError("options", "must be plain JSON (no NaN or infinity)") from None
    return options


def request_data(request: pb.DoTransferRequest) -> dict[str, Any]:
    """The proto request as plain data for `build_draft`; proto3's empty means unset."""
    invitee = None
    if request.HasField("invitee"):
        invitee = {
            "name": request.invitee.name,
            "email": request.invitee.email or None,
            "webhook_url": request.invitee.webhook_url or None,
        }
    return {
        "src": request.src,
        "dest": request.dest,
        "remotes": [
            {
                "name": remote.name,
                "type": remote.type,
                "options": dict(remote.options),
                "secret_options": dict(remote.secret_options),
            }
            for remote in request.remotes
        ],
        "credential": request.credential or None,
        "invitee": invitee,
        "driver": request.driver or Driver.RCLONE.value,
        "options": _options(request),
        "request_id": request.request_id or None,
        "retries": request.retries if request.HasField("retries") else None,
        "timeout_seconds": request.timeout_seconds if request.HasField("timeout_seconds") else None,
    }


def _page_token(record: TransferRecord) -> str:
    raw = json.dumps([record.created.isoformat(), record.name]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _page_start(token: str) -> tuple[dt.datetime, str]:
    try:
        created, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        return dt.datetime.fromisoformat(created), str(name)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgumentError("page_token", "not a token this API returned") from None


class SeedService(pb_grpc.DataTxServicer):
    def __init__(self, transfers: Transfers, auth: Authenticator) -> None:
        self._transfers = transfers
        self._auth = auth

    def _principal(self, context: Context) -> Principal:
        return self._auth.authenticate(context.invocation_metadata())

    async def DoTransfer(
        self, request: pb.DoTransferRequest, context: Context
    ) -> pb.DoTransferResponse:
        async def call() -> pb.DoTransferResponse:
            principal = self._principal(context)
            draft = build_draft(request_data(request), principal)
            record, created = await self._transfers.create(principal, draft)
            text = (
                "created" if created else "already created by an earlier call with this request_id"
            )
            return pb.DoTransferResponse(transfer_id=record.name, text=text)

        return await _answer(context, call())

    async def GetStatus(
        self, request: pb.GetStatusRequest, context: Context
    ) -> pb.GetStatusResponse:
        async def call() -> pb.GetStatusResponse:
            principal = self._principal(context)
            record = await self._transfers.get(principal, check_transfer_id(request.transfer_id))
            transfer = seed_transfer(record)
            return pb.GetStatusResponse(
                status=transfer.status,
                text=transfer.text,
                progress=transfer.progress,
                transfer=transfer,
            )

        return await _answer(context, call())

    async def DestroyTransfer(
        self, request: pb.DestroyTransferRequest, context: Context
    ) -> pb.DestroyTransferResponse:
        async def call() -> pb.DestroyTransferResponse:
            principal = self._principal(context)
            name = check_transfer_id(request.transfer_id)
            outcome = await self._transfers.cancel(principal, name, destroy=True)
            result = pb.OK if outcome.stopped else pb.NOTOK
            return pb.DestroyTransferResponse(result=result, text=outcome.text)

        return await _answer(context, call())

    async def AcceptInvite(
        self, request: pb.AcceptInviteRequest, context: Context
    ) -> pb.AcceptInviteResponse:
        async def call() -> pb.AcceptInviteResponse:
            record = await self._transfers.accept_invite(
                request.transfer_id, request.invite_token, request.credential
            )
            return pb.AcceptInviteResponse(text=f"accepted; {describe(record)}")

        return await _answer(context, call())

    async def DeclineInvite(
        self, request: pb.DeclineInviteRequest, context: Context
    ) -> pb.DeclineInviteResponse:
        async def call() -> pb.DeclineInviteResponse:
            await self._transfers.decline_invite(request.transfer_id, request.invite_token)
            return pb.DeclineInviteResponse(text="declined; the transfer will not run")

        return await _answer(context, call())

    async def ListTransfers(
        self, request: pb.ListTransfersRequest, context: Context
    ) -> pb.ListTransfersResponse:
        async def call() -> pb.ListTransfersResponse:
            principal = self._principal(context)
            size = request.page_size or DEFAULT_PAGE
            if size > MAX_PAGE:
                raise InvalidArgumentError("page_size", f"must be at most {MAX_PAGE}")
            matches = _list_filter(request, principal)
            matching = [record for record in self._transfers.visible(principal) if matches(record)]
            start = 0
            if request.page_token:
                cursor = _page_start(request.page_token)
                keys = [(record.created, record.name) for record in matching]
                start = bisect.bisect_right(keys, cursor)
            page = matching[start : start + size]
            more = start + size < len(matching)
            return pb.ListTransfersResponse(
                transfers=[seed_transfer(record) for record in page],
                next_page_token=_page_token(page[-1]) if more and page else "",
            )

        return await _answer(context, call())

    async def WatchTransfer(
        self, request: pb.WatchTransferRequest, context: Context
    ) -> AsyncIterator[pb.Transfer]:
        try:
            principal = self._principal(context)
            name = check_transfer_id(request.transfer_id)
            last: pb.Transfer | None = None
            async for record in self._transfers.watch(principal, name):
                message = seed_transfer(record)
                if message != last:
                    yield message
                    last = message
        except BridgeError as error:
            await context.abort(error.grpc_code, error.message)


def _time(request: pb.ListTransfersRequest, field: str) -> dt.datetime | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    stamp = getattr(request, field)
    if not (0 <= stamp.seconds <= MAX_SECONDS and 0 <= stamp.nanos < 1_000_000_000):
        raise InvalidArgumentError(field, "out of range")
    value: dt.datetime = stamp.ToDatetime(dt.UTC)
    return value


def _list_filter(
    request: pb.ListTransfersRequest, principal: Principal
) -> Callable[[TransferRecord], bool]:
    """The predicate of the request's filters: AND between filters, OR inside one."""
    if len(request.statuses) > MAX_FILTER_VALUES or len(request.drivers) > MAX_FILTER_VALUES:
        raise InvalidArgumentError("statuses", f"at most {MAX_FILTER_VALUES} values per filter")
    phases = set()
    for index, status in enumerate(request.statuses):
        if status not in PHASE_OF_SEED_STATUS:
            raise InvalidArgumentError(f"statuses[{index}]", "not a transfer status")
        phases.add(PHASE_OF_SEED_STATUS[status])
    drivers = set()
    for index, driver in enumerate(request.drivers):
        if driver not in DRIVERS:
            raise InvalidArgumentError(
                f"drivers[{index}]", f"one of {', '.join(d.value for d in Driver)}"
            )
        drivers.add(driver)
    after = _time(request, "created_after")
    before = _time(request, "created_before")
    owner = request.owner or None
    if owner is not None and not principal.is_admin and owner != principal.user:
        raise PermissionDeniedError("owner: only admins list other users' transfers")

    def matches(record: TransferRecord) -> bool:
        return (
            (not phases or record.phase in phases)
            and (not drivers or record.driver in drivers)
            and (after is None or record.created >= after)
            and (before is None or record.created < before)
            and (owner is None or record.owner_user == owner)
        )

    return matches
