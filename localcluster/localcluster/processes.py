"""Start and stop the cluster's processes, each in its own session, and prove none is left.

A record keeps the pid with its kernel start time, so a `down` run long after `up` never
signals an unrelated process that happens to reuse the pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessRecord:
    """A process leading its own process group (pid == pgid)."""

    name: str
    pid: int
    start_time: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProcessRecord:
        data = json.loads(text)
        return cls(str(data["name"]), int(data["pid"]), int(data["start_time"]))


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (field 3), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def start_time(pid: int) -> int:
    fields = _stat_fields(pid)
    if fields is None:
        raise ProcessLookupError(pid)
    return int(fields[19])


def alive(record: ProcessRecord) -> bool:
    fields = _stat_fields(record.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == record.start_time


def group_members(pgids: Iterable[int]) -> list[int]:
    """Live (not zombie) processes whose process group is one of `pgids`."""
    wanted = set(pgids)
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[0] != "Z" and int(fields[2]) in wanted:
            members.append(int(entry.name))
    return members


def _die_with_parent(signum: int) -> Callable[[], None]:
    """What runs in the child before exec: get `signum` when the starting process goes away."""

    def arrange() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum)

    return arrange


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    death_signal: int | None = None,
) -> ProcessRecord:
    """Start `argv` detached in a new session, output appended to `log_path`; with
    `death_signal`, the process gets that signal if the calling process dies."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent(death_signal) if death_signal else None,
        )
    return ProcessRecord(name, process.pid, start_time(process.pid))


def _reap(pid: int) -> None:
    """Collect the exit status of our own children so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(record: ProcessRecord, signum: int) -> None:
    if alive(record) or group_members([record.pid]):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signum)


def stop(records: Sequence[ProcessRecord], timeout: float) -> None:
    """SIGTERM each group, wait up to `timeout`, then SIGKILL what is left."""
    for record in records:
        _signal_group(record, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    pgids = [record.pid for record in records]
    while time.monotonic() < deadline:
        for record in records:
            _reap(record.pid)
        if not group_members(pgids) and not any(alive(record) for record in records):
            return
        time.sleep(0.1)
    for record in records:
        _signal_group(record, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for record in records:
            _reap(record.pid)
        if not group_members(pgids):
            return
        time.sleep(0.05)
    raise RuntimeError(f"processes survive SIGKILL: {group_members(pgids)}")
