"""Container log files in the CRI format kubelet reads: `<time> <stream> <F|P> <text>`.

F marks a complete line, P a part of a longer one (or an unterminated last line), so the
log endpoint can give back exactly what the process wrote, with or without timestamps.
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_LINE = 16 * 1024


def now_rfc3339nano() -> str:
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


@dataclass(frozen=True)
class Entry:
    time: str
    stream: str
    complete: bool
    content: bytes

    def render(self, timestamps: bool) -> bytes:
        prefix = self.time.encode() + b" " if timestamps else b""
        return prefix + self.content + (b"\n" if self.complete else b"")

    @property
    def moment(self) -> datetime.datetime:
        return datetime.datetime.fromisoformat(self.time[:26] + "+00:00")


class LogWriter:
    """Appends one container run's stdout and stderr to its log file, line by line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("ab")
        self._pending = {"stdout": b"", "stderr": b""}
        self.recent: deque[bytes] = deque(maxlen=80)

    def _write(self, stream: str, complete: bool, content: bytes) -> None:
        tag = b"F" if complete else b"P"
        self._file.write(
            b" ".join((now_rfc3339nano().encode(), stream.encode(), tag, content)) + b"\n"
        )
        if complete:
            self.recent.append(content)

    def feed(self, stream: str, data: bytes) -> None:
        buffer = self._pending[stream] + data
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            self._write(stream, True, line)
        while len(rest) > MAX_LINE:
            self._write(stream, False, rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self._pending[stream] = rest
        self._file.flush()

    def close(self) -> None:
        for stream, rest in self._pending.items():
            if rest:
                self._write(stream, False, rest)
        self._pending = {"stdout": b"", "stderr": b""}
        self._file.close()


def parse(lines: Iterable[bytes]) -> Iterator[Entry]:
    for line in lines:
        parts = line.rstrip(b"\n").split(b" ", 3)
        if len(parts) < 3:
            continue
        content = parts[3] if len(parts) == 4 else b""
        yield Entry(parts[0].decode(), parts[1].decode(), parts[2] == b"F", content)


def tail_text(writer: LogWriter, limit: int = 2048) -> str:
    """The end of the output, for terminationMessagePolicy FallbackToLogsOnError."""
    text = b"\n".join(writer.recent).decode(errors="replace")
    return text[-limit:]
