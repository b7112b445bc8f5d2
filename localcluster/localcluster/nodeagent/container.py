"""One run of one container: a sandboxed process, its output pumped into its log file.

bubblewrap starts the command as leader of a new session, so signals go to the command's
whole process group and never to bwrap, which then reports the command's exit status
(128 + signal number when a signal ended it, as container runtimes do).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from localcluster.nodeagent import sandbox
from localcluster.nodeagent.logfiles import LogWriter
from localcluster.processes import ProcessRecord, start_time

CHUNK = 65536


class ContainerProcess:
    """A started container process; `exit_code` resolves when it has ended."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        leader: int | None,
        log: LogWriter,
        record_path: Path,
    ) -> None:
        self.process = process
        self.leader = leader
        self.log = log
        self.record_path = record_path
        self._pumps = [
            asyncio.create_task(self._pump("stdout", process.stdout)),
            asyncio.create_task(self._pump("stderr", process.stderr)),
        ]
        self.exit_code: asyncio.Task[int] = asyncio.create_task(self._wait())

    @classmethod
    async def start(
        cls,
        mounts: Sequence[sandbox.Mount],
        working_dir: str,
        command: Sequence[str],
        env: dict[str, str],
        log: LogWriter,
        record_path: Path,
    ) -> ContainerProcess:
        info_read, info_write = os.pipe()
        try:
            argv = sandbox.bwrap_argv(mounts, working_dir, info_write)
            process = await asyncio.create_subprocess_exec(
                *argv,
                "--",
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                pass_fds=(info_write,),
            )
        finally:
            os.close(info_write)
        info = await asyncio.to_thread(_read_all, info_read)
        leader = json.loads(info)["child-pid"] if info.strip() else None
        if leader is not None:
            _write_record(record_path, leader)
        return cls(process, leader, log, record_path)

    async def _pump(self, stream: str, reader: asyncio.StreamReader | None) -> None:
        if reader is None:
            return
        while chunk := await reader.read(CHUNK):
            self.log.feed(stream, chunk)

    async def _wait(self) -> int:
        code = await self.process.wait()
        # The command's end ends the container: nothing it left behind keeps running.
        self._signal(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._pumps), timeout=2)
        for pump in self._pumps:
            pump.cancel()
        self.log.close()
        self.record_path.unlink(missing_ok=True)
        return code

    @property
    def started(self) -> bool:
        """Whether bwrap got as far as starting the command."""
        return self.leader is not None

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.leader is not None:
                os.killpg(self.leader, signum)
            elif self.process.returncode is None:
                self.process.send_signal(signum)

    async def stop(self, grace: float) -> int:
        """SIGTERM, then SIGKILL once `grace` seconds have passed; the exit code."""
        if not self.exit_code.done():
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exit_code), timeout=max(grace, 0))
            except TimeoutError:
                self._signal(signal.SIGKILL)
        return await self.exit_code


def _write_record(path: Path, leader: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(ProcessLookupError):
        path.write_text(ProcessRecord(path.stem, leader, start_time(leader)).to_json())


def _read_all(fd: int) -> str:
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()
