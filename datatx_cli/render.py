"""How transfers look: plain data for `--output json`, rich tables and panels for people.

The JSON form is a stable contract for scripts: snake_case keys, status names as in the
proto, integers as numbers, times in RFC 3339 (UTC), absent values as null.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table
from rich.text import Text

from datatx.v1 import datatx_pb2 as pb

TERMINAL = frozenset(
    {
        pb.FINISHED,
        pb.FAILED,
        pb.CANCELLED,
        pb.INVITE_DECLINED,
        pb.INVITE_NOT_ACCEPTED_ON_TIME,
    }
)
STYLE: dict[int, str] = {
    pb.FINISHED: "green",
    pb.IN_PROGRESS: "cyan",
    pb.PENDING: "blue",
    pb.WAITING_FOR_INVITE_ACCEPTANCE: "yellow",
    pb.FAILED: "red",
    pb.CANCELLED: "magenta",
    pb.INVITE_DECLINED: "magenta",
    pb.INVITE_NOT_ACCEPTED_ON_TIME: "magenta",
}
UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def status_name(status: int) -> str:
    return str(pb.Status.Name(status))  # type: ignore[arg-type]


def _time(message: Message, field: str) -> str | None:
    if not message.HasField(field):
        return None
    stamp = getattr(message, field)
    return str(stamp.ToJsonString())


def progress_data(progress: pb.Progress) -> dict[str, Any]:
    return {
        "bytes": progress.bytes,
        "total_bytes": progress.total_bytes,
        "files": progress.files,
        "total_files": progress.total_files,
        "rate_bytes_per_second": progress.rate_bytes_per_second,
        "eta_seconds": progress.eta_seconds if progress.HasField("eta_seconds") else None,
        "percent": progress.percent,
    }


def transfer_data(transfer: pb.Transfer) -> dict[str, Any]:
    return {
        "transfer_id": transfer.transfer_id,
        "status": status_name(transfer.status),
        "text": transfer.text,
        "reason": transfer.reason or None,
        "src": transfer.src,
        "dest": transfer.dest,
        "driver": transfer.driver,
        "owner": transfer.owner,
        "attempts": transfer.attempts,
        "restarts": transfer.restarts,
        "progress": progress_data(transfer.progress),
        "create_time": _time(transfer, "create_time"),
        "start_time": _time(transfer, "start_time"),
        "completion_time": _time(transfer, "completion_time"),
        "invite_deadline": _time(transfer, "invite_deadline"),
    }


def emit_json(value: Any) -> None:
    """Plain stdout, one document per line: no markup, no wrapping."""
    print(json.dumps(value), flush=True)


def size(count: int) -> str:
    value = float(count)
    for unit in UNITS:
        if value < 1024 or unit == UNITS[-1]:
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_text(status: int) -> Text:
    return Text(status_name(status), style=STYLE.get(status, ""))


def table(transfers: list[pb.Transfer]) -> Table:
    grid = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "STATUS", "DRIVER", "DONE", "SIZE", "CREATED (UTC)"):
        grid.add_column(column, no_wrap=True)
    for column in ("SOURCE", "DESTINATION"):  # folded, never cut: users look for them
        grid.add_column(column, overflow="fold", min_width=12)
    for transfer in transfers:
        progress = transfer.progress
        created = _time(transfer, "create_time") or ""
        grid.add_row(
            transfer.transfer_id,
            status_text(transfer.status),
            transfer.driver,
            f"{progress.percent}%",
            size(progress.total_bytes) if progress.total_bytes else "-",
            created.replace("T", " ").removesuffix("Z")[:16],
            transfer.src,
            transfer.dest,
        )
    return grid


def details(transfer: pb.Transfer) -> Table:
    """`datatx status`: one transfer, field by field."""
    data = transfer_data(transfer)
    progress = transfer.progress
    rows: list[tuple[str, str | Text]] = [
        ("id", transfer.transfer_id),
        ("status", status_text(transfer.status)),
        ("text", transfer.text),
        ("reason", data["reason"] or "-"),
        ("source", transfer.src),
        ("destination", transfer.dest),
        ("driver", transfer.driver),
        ("owner", transfer.owner),
        (
            "progress",
            f"{progress.percent}%: {size(progress.bytes)} of {size(progress.total_bytes)}, "
            f"{progress.files} of {progress.total_files} files",
        ),
        ("rate", f"{size(progress.rate_bytes_per_second)}/s"),
        ("eta", duration(data["progress"]["eta_seconds"])),
        ("attempts", str(transfer.attempts)),
    ]
    for label, field in (
        ("created", "create_time"),
        ("started", "start_time"),
        ("completed", "completion_time"),
        ("invite deadline", "invite_deadline"),
    ):
        if data[field]:
            rows.append((label, str(data[field])))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def stdout() -> Console:
    return Console(soft_wrap=True, highlight=False)
