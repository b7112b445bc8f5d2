"""rclone's JSON log (`--use-json-log`) and exit codes, read into datatx terms.

Stats lines (`--stats 1s --stats-log-level NOTICE`) become `Progress` and, at the end,
`Result`; error lines are kept, redacted, for the message; exit code plus error text give
the `Reason` (exit codes: https://rclone.org/docs/#exit-code).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from datatx_operator.drivers.base import Reason
from datatx_operator.drivers.redact import Redactor
from datatx_operator.models import Progress, Result

KEPT_ERRORS = 10

EXIT_REASONS = {
    2: Reason.INVALID_REQUEST,  # syntax or usage error
    3: Reason.NOT_FOUND,  # directory not found
    4: Reason.NOT_FOUND,  # file not found
}
# Tried in order on the error text of exit codes 1 and 5-10.
TEXT_REASONS = (
    (Reason.CHECKSUM_MISMATCH, re.compile(r"corrupted on transfer|hash(es)? differ")),
    (
        Reason.NETWORK_ERROR,
        re.compile(
            r"connection refused|no such host|i/o timeout|network is unreachable|"
            r"no route to host|connection reset|deadline exceeded|tls: |handshake timeout|"
            r"server misbehaving|dial tcp|timeout awaiting"
        ),
    ),
    (
        Reason.AUTHENTICATION_FAILED,
        re.compile(
            r"\b40[13]\b|unauthori[sz]ed|forbidden|unable to authenticate|authenticat|"
            r"permission denied|access ?denied|signaturedoesnotmatch|invalidaccesskeyid|"
            r"invalid credentials"
        ),
    ),
    (
        Reason.NOT_FOUND,
        re.compile(r"\b404\b|not found|no such file|nosuchbucket|nosuchkey|does not exist"),
    ),
)


def reason_for(exit_code: int, errors: Sequence[str]) -> Reason:
    """Why a failed rclone command failed, from its exit code and what it logged."""
    if exit_code in EXIT_REASONS:
        return EXIT_REASONS[exit_code]
    text = "\n".join(errors).lower()
    for reason, pattern in TEXT_REASONS:
        if pattern.search(text):
            return reason
    return Reason.REMOTE_FAILED


def _count(stats: Mapping[str, Any], key: str) -> int:
    value = stats.get(key)
    return max(int(value), 0) if isinstance(value, int | float) else 0


def progress_from_stats(stats: Mapping[str, Any], now: dt.datetime) -> Progress:
    done, total = _count(stats, "bytes"), _count(stats, "totalBytes")
    total = max(total, done)
    files = _count(stats, "transfers")
    total_files = max(_count(stats, "totalTransfers"), files)
    eta = stats.get("eta")
    return Progress(
        bytes=done,
        total_bytes=total,
        files=files,
        total_files=total_files,
        rate_bytes_per_second=_count(stats, "speed"),
        eta_seconds=max(int(eta), 0) if isinstance(eta, int | float) else None,
        percent=done * 100 // total if total else (100 if files and files == total_files else 0),
        update_time=now,
    )


class RunLog:
    """What one rclone command wrote on stderr so far: its last stats and its errors."""

    def __init__(self, redact: Redactor) -> None:
        self._redact = redact
        self.stats: dict[str, Any] = {}
        self.errors: list[str] = []  # the first few, redacted
        self.error_lines = 0
        self.messages: list[str] = []  # notices and errors, redacted (for `rclone check`)
        self.progress = Progress()

    def feed(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):  # not rclone's JSON: a crash report, say
            self._error(line)
            return
        stats = entry.get("stats")
        if isinstance(stats, dict):
            self.stats = stats
            self.progress = progress_from_stats(stats, dt.datetime.now(dt.UTC))
            return
        level, message = entry.get("level"), str(entry.get("msg", "")).strip()
        where = entry.get("object")
        if isinstance(where, str) and where and entry.get("objectType") != "string":
            message = f"{where}: {message}"
        if level in ("notice", "error", "critical"):
            self.messages.append(self._redact(message))
        if level in ("error", "critical") or (level == "notice" and "Failed to" in message):
            self._error(message)

    def _error(self, text: str) -> None:
        self.error_lines += 1
        text = self._redact(text)
        if len(self.errors) < KEPT_ERRORS and text not in self.errors:
            self.errors.append(text)

    def feed_all(self, text: str) -> RunLog:
        for line in text.splitlines():
            self.feed(line)
        return self

    @property
    def files(self) -> int:
        return _count(self.stats, "transfers")

    @property
    def checks(self) -> int:
        return _count(self.stats, "checks")

    def result(self) -> Result:
        return Result(
            files=self.files, bytes=_count(self.stats, "bytes"), errors=_count(self.stats, "errors")
        )

    def count(self, pattern: re.Pattern[str]) -> int:
        """The number in the first message matching `pattern` (its first group), else 0."""
        for message in self.messages:
            found = pattern.search(message)
            if found:
                return int(found.group(1))
        return 0
