"""Follow a transfer until it ends: a live progress bar (bytes, rate and ETA as the mover
measures them) and one line per change of status.

A bridge replica that stops ends its watch streams; the CLI then watches again (through
whichever replica answers), so a rolling update does not end `datatx watch`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from datatx.v1 import datatx_pb2 as pb
from datatx_cli import render
from datatx_cli.client import Bridge
from datatx_cli.errors import CliError, ExitCode

RECONNECTS = 5
COLUMNS = ("status", "amount", "files", "rate", "eta")


def follow(bridge: Bridge, transfer_id: str) -> Iterator[pb.Transfer]:
    """Every state of the transfer until a terminal one, across dropped streams."""
    failures = 0
    while True:
        try:
            for transfer in bridge.watch(transfer_id):
                failures = 0
                yield transfer
                if transfer.status in render.TERMINAL:
                    return
        except CliError as error:
            if error.code is not ExitCode.UNREACHABLE or failures >= RECONNECTS:
                raise
        failures += 1
        if failures > RECONNECTS:
            raise CliError(f"lost the watch of {transfer_id}", ExitCode.UNREACHABLE)
        time.sleep(min(0.5 * 2**failures, 8))


def _fields(transfer: pb.Transfer) -> dict[str, Any]:
    progress = transfer.progress
    eta = progress.eta_seconds if progress.HasField("eta_seconds") else None
    amount = f"{render.size(progress.bytes)} / {render.size(progress.total_bytes)}"
    files = f"{progress.files}/{progress.total_files} files" if progress.total_files else ""
    return {
        "status": render.status_name(transfer.status),
        "amount": amount,
        "files": files,
        "rate": f"{render.size(progress.rate_bytes_per_second)}/s",
        "eta": render.duration(eta),
    }


def _blank() -> dict[str, Any]:
    return dict.fromkeys(COLUMNS, "")


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.fields[status]:<11}"),
        BarColumn(bar_width=30),
        TaskProgressColumn(),
        TextColumn("{task.fields[amount]}"),
        TextColumn("{task.fields[files]}"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA {task.fields[eta]}"),
        console=console,
    )


def show(bridge: Bridge, transfer_id: str, console: Console) -> pb.Transfer:
    """Follow with a progress bar; return the last state seen."""
    last: pb.Transfer | None = None
    with _progress(console) as progress:
        task = progress.add_task(transfer_id, total=None, **_blank())
        for transfer in follow(bridge, transfer_id):
            if last is None or transfer.status != last.status:
                progress.console.print(
                    transfer.transfer_id, render.status_text(transfer.status), transfer.text
                )
            total = transfer.progress.total_bytes or None
            progress.update(
                task, total=total, completed=transfer.progress.bytes, **_fields(transfer)
            )
            last = transfer
    if last is None:
        raise CliError(f"the watch of {transfer_id} ended before any state")
    return last


def stream_json(bridge: Bridge, transfer_id: str) -> pb.Transfer:
    """One JSON object per state, one per line."""
    last: pb.Transfer | None = None
    for transfer in follow(bridge, transfer_id):
        render.emit_json(render.transfer_data(transfer))
        last = transfer
    if last is None:
        raise CliError(f"the watch of {transfer_id} ended before any state")
    return last
