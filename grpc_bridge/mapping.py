"""A transfer record in the words of each API: seed statuses, CS3 statuses, texts.

Status mapping to CS3 (ARCHITECTURE.md): Pending -> TRANSFER_NEW (ACCEPTED after an accepted
invite), WaitingForInviteAcceptance -> AWAITING_ACCEPTANCE, InProgress -> IN_PROGRESS,
Finished -> COMPLETE, Failed -> FAILED, Cancelled and InviteDeclined -> CANCELLED (the
description says which), InviteNotAcceptedOnTime -> EXPIRED, and a cancel that could not
stop the remote job (reason CancelFailed) -> CANCEL_FAILED.
"""

from __future__ import annotations

import datetime as dt

from cs3.identity.user.v1beta1 import resources_pb2 as cs3_user
from cs3.sharing.ocm.v1beta1 import resources_pb2 as cs3_ocm
from cs3.tx.v1beta1 import resources_pb2 as cs3_tx
from cs3.types.v1beta1 import types_pb2 as cs3_types
from google.protobuf.timestamp_pb2 import Timestamp

from datatx.v1 import datatx_pb2 as pb
from datatx_operator.models import InviteResponse, Phase, Progress
from grpc_bridge.records import TransferRecord

SEED_STATUS: dict[Phase, pb.Status.ValueType] = {
    Phase.PENDING: pb.PENDING,
    Phase.IN_PROGRESS: pb.IN_PROGRESS,
    Phase.FINISHED: pb.FINISHED,
    Phase.INVITE_NOT_ACCEPTED_ON_TIME: pb.INVITE_NOT_ACCEPTED_ON_TIME,
    Phase.WAITING_FOR_INVITE_ACCEPTANCE: pb.WAITING_FOR_INVITE_ACCEPTANCE,
    Phase.INVITE_DECLINED: pb.INVITE_DECLINED,
    Phase.FAILED: pb.FAILED,
    Phase.CANCELLED: pb.CANCELLED,
}
PHASE_OF_SEED_STATUS = {status: phase for phase, status in SEED_STATUS.items()}

CS3_STATUS: dict[Phase, int] = {
    Phase.PENDING: cs3_tx.STATUS_TRANSFER_NEW,
    Phase.IN_PROGRESS: cs3_tx.STATUS_TRANSFER_IN_PROGRESS,
    Phase.FINISHED: cs3_tx.STATUS_TRANSFER_COMPLETE,
    Phase.INVITE_NOT_ACCEPTED_ON_TIME: cs3_tx.STATUS_TRANSFER_EXPIRED,
    Phase.WAITING_FOR_INVITE_ACCEPTANCE: cs3_tx.STATUS_TRANSFER_AWAITING_ACCEPTANCE,
    Phase.INVITE_DECLINED: cs3_tx.STATUS_TRANSFER_CANCELLED,
    Phase.FAILED: cs3_tx.STATUS_TRANSFER_FAILED,
    Phase.CANCELLED: cs3_tx.STATUS_TRANSFER_CANCELLED,
}


def cs3_status(record: TransferRecord) -> int:
    if record.cancel_failed:
        return int(cs3_tx.STATUS_TRANSFER_CANCEL_FAILED)
    if record.phase is Phase.PENDING and record.invite_response is InviteResponse.ACCEPTED:
        return int(cs3_tx.STATUS_TRANSFER_ACCEPTED)
    return int(CS3_STATUS[record.phase])


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _progress_text(progress: Progress) -> str:
    parts = [f"{progress.percent}%", f"{_size(progress.bytes)} of {_size(progress.total_bytes)}"]
    if progress.total_files:
        parts.append(f"{progress.files} of {progress.total_files} files")
    if progress.rate_bytes_per_second:
        parts.append(f"{_size(progress.rate_bytes_per_second)}/s")
    if progress.eta_seconds is not None:
        parts.append(f"ETA {progress.eta_seconds} s")
    return ", ".join(parts)


def describe(record: TransferRecord) -> str:
    """One line a person understands: progress while it runs, the error when it failed."""
    status = record.status
    detail = f": {status.message}" if status.message else ""
    reason = f" ({status.reason})" if status.reason else ""
    phase = record.phase
    if record.cancel_failed:
        return f"cancel failed{detail}"
    if phase is Phase.PENDING:
        accepted = record.invite_response is InviteResponse.ACCEPTED
        return ("invite accepted; " if accepted else "") + "waiting for its run to start"
    if phase is Phase.WAITING_FOR_INVITE_ACCEPTANCE:
        deadline = status.invite.deadline if status.invite else None
        until = f" until {deadline.isoformat()}" if deadline else ""
        return f"waiting for the invitee to accept{until}"
    if phase is Phase.IN_PROGRESS:
        return f"in progress: {_progress_text(status.progress)}"
    if phase is Phase.FINISHED:
        result = status.result
        if result is not None:
            return f"finished: {result.files} files, {_size(result.bytes)}"
        return f"finished: {_size(status.progress.bytes)}"
    if phase is Phase.FAILED:
        return f"failed{reason}{detail}"
    if phase is Phase.CANCELLED:
        return f"cancelled{detail}"
    if phase is Phase.INVITE_DECLINED:
        return "cancelled: the invitee declined the invite"
    return "expired: the invite was not accepted on time"


def _timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return stamp


def seed_progress(progress: Progress) -> pb.Progress:
    message = pb.Progress(
        bytes=progress.bytes,
        total_bytes=progress.total_bytes,
        files=progress.files,
        total_files=progress.total_files,
        rate_bytes_per_second=progress.rate_bytes_per_second,
        percent=progress.percent,
    )
    if progress.eta_seconds is not None:
        message.eta_seconds = progress.eta_seconds
    return message


def seed_transfer(record: TransferRecord) -> pb.Transfer:
    status = record.status
    return pb.Transfer(
        transfer_id=record.name,
        status=SEED_STATUS[record.phase],
        text=describe(record),
        progress=seed_progress(status.progress),
        src=record.source,
        dest=record.destination,
        driver=record.driver,
        owner=record.owner_user,
        reason=status.reason,
        attempts=status.attempts,
        restarts=record.restarts,
        create_time=_timestamp(record.created),
        start_time=_timestamp(status.start_time),
        completion_time=_timestamp(status.completion_time),
        invite_deadline=_timestamp(status.invite.deadline if status.invite else None),
    )


def tx_info(
    record: TransferRecord, *, status: int | None = None, text: str | None = None
) -> cs3_tx.TxInfo:
    info = cs3_tx.TxInfo(
        id=cs3_tx.TxId(opaque_id=record.name),
        status=cs3_status(record) if status is None else status,
        creator=cs3_user.UserId(idp=record.owner_idp, opaque_id=record.owner_user),
        ctime=cs3_types.Timestamp(seconds=max(int(record.created.timestamp()), 0)),
        description=describe(record) if text is None else text,
    )
    if record.share_id:
        info.share_id.CopyFrom(cs3_ocm.ShareId(opaque_id=record.share_id))
    return info
