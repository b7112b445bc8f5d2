"""Read the files of a source location for drivers that upload them themselves (FileSender),
through rclone (`lsjson`, `cat`), configured as the rclone driver does it (`rclone_config`:
secrets only in the 0600 config file, local remotes confined to the site's local root,
errors redacted).
"""

from __future__ import annotations

import abc
import asyncio
import json
import posixpath
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from datatx_operator.drivers.base import DriverError, Reason
from datatx_operator.drivers.http import clip
from datatx_operator.drivers.rclone_cli import Rclone
from datatx_operator.drivers.rclone_config import write_config
from datatx_operator.drivers.redact import Redactor
from datatx_operator.models import DataTransferSpec

RCLONE_NOT_FOUND = 3


@dataclass(frozen=True)
class SourceFile:
    relative: str  # below the source location; the file's name when the source is a file
    size: int


class Source(abc.ABC):
    """The files at one location, readable chunk by chunk."""

    def __init__(self, location: str) -> None:
        self.location = location

    @abc.abstractmethod
    async def files(self) -> list[SourceFile]:
        """Every file at the location (the location itself when it is a file)."""

    @abc.abstractmethod
    def chunks(self, file: SourceFile, size: int) -> AsyncIterator[bytes]:
        """The file's bytes in chunks of `size` (the last one shorter)."""


class RcloneSource(Source):
    def __init__(self, location: str, rclone: Rclone, redact: Redactor) -> None:
        super().__init__(location)
        self.rclone = rclone
        self.redact = redact
        self._single = False

    async def _run(self, *args: str) -> str:
        done = await self.rclone.run(*args)
        if done.returncode != 0:
            raise self._error(done.returncode, done.stderr)
        return done.stdout

    async def files(self) -> list[SourceFile]:
        stat = json.loads(await self._run("lsjson", "--stat", self.location))
        if not stat.get("IsDir"):
            self._single = True
            return [SourceFile(str(stat["Name"]), int(stat["Size"]))]
        listing = json.loads(await self._run("lsjson", "-R", "--files-only", self.location))
        return sorted(
            (SourceFile(str(entry["Path"]), int(entry["Size"])) for entry in listing),
            key=lambda file: file.relative,
        )

    async def chunks(self, file: SourceFile, size: int) -> AsyncIterator[bytes]:
        target = self.location if self._single else _below(self.location, file.relative)
        process = await self.rclone.spawn("cat", target)
        assert process.stdout is not None
        assert process.stderr is not None
        errors = asyncio.create_task(process.stderr.read())
        try:
            while chunk := await _read_exactly(process.stdout, size):
                yield chunk
            code = await process.wait()
            if code != 0:
                raise self._error(code, (await errors).decode(errors="replace"))
        finally:
            await self.rclone.stop()
            self.rclone.forget(process)
            errors.cancel()

    def _error(self, code: int, stderr: str) -> DriverError:
        lines = [line for line in stderr.splitlines() if line.strip()]
        detail = clip(self.redact(lines[-1] if lines else f"exit code {code}"))
        if code == RCLONE_NOT_FOUND or "not found" in detail.lower():
            return DriverError(
                Reason.NOT_FOUND, f"source {self.location} does not exist ({detail})"
            )
        return DriverError(
            Reason.REMOTE_FAILED, f"reading source {self.location} failed ({detail})"
        )


async def open_source(spec: DataTransferSpec, secrets: Mapping[str, str], workdir: Path) -> Source:
    """The source of `spec`, read through rclone."""
    remote = spec.remote(spec.source.partition(":")[0])
    rclone = Rclone(workdir)
    redact = Redactor()
    await write_config(rclone, [remote], secrets, None, redact)
    return RcloneSource(spec.source, rclone, redact)


async def _read_exactly(stream: asyncio.StreamReader, size: int) -> bytes:
    parts = []
    missing = size
    while missing:
        part = await stream.read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def _below(location: str, relative: str) -> str:
    remote, _, path = location.partition(":")
    return f"{remote}:{posixpath.join(path, relative)}"
