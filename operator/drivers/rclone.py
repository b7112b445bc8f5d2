"""The rclone driver: rclone itself copies the bytes, from inside the mover pod.

A run: write the config file (rclone_config), look at the source (a folder: `rclone copy`;
a single file: `rclone copyto`), check that the destination answers, find a hash type both
ends have, copy with JSON stats on stderr (rclone_stats) and, when there is a common hash,
verify the copy with it afterwards. Every text that leaves the driver is redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from datatx_operator.drivers.base import Driver, DriverError, Outcome, Reason, RunContext
from datatx_operator.drivers.rclone_cli import Completed, Rclone, run_together
from datatx_operator.drivers.rclone_config import write_config
from datatx_operator.drivers.rclone_stats import RunLog, reason_for
from datatx_operator.drivers.redact import Redactor
from datatx_operator.models import Checksum, Progress, RcloneOptions, Remote

log = logging.getLogger(__name__)

LOG_FLAGS = ("--use-json-log", "--stats=1s", "--stats-log-level=NOTICE", "-v")
# One rclone pass per attempt: the Job retries with backoff and the operator counts them.
RETRY_FLAGS = ("--retries=1",)
# rclone's order of preference (`hash.Set.GetOne`), so the one named is the one it uses.
HASH_PREFERENCE = ("md5", "sha1", "whirlpool", "crc32", "sha256", "sha512", "blake3", "xxh3")
MAX_DETAIL = 400
CLEANUP_SECONDS = 10.0
DIFFERENCES = re.compile(r"(\d+) differences found")
UNCHECKED = re.compile(r"(\d+) hashes could not be checked")
MISSING = re.compile(r"(\d+) files missing")

SUMMARIES = {
    Reason.AUTHENTICATION_FAILED: "authentication failed",
    Reason.NOT_FOUND: "not found",
    Reason.NETWORK_ERROR: "cannot reach the server",
    Reason.CHECKSUM_MISMATCH: "checksums differ",
    Reason.INVALID_REQUEST: "rclone refused the request",
    Reason.PARTIAL_FAILURE: "some files failed",
    Reason.REMOTE_FAILED: "the copy failed",
}


@dataclass(frozen=True)
class Side:
    """The source or the destination of the run."""

    role: str
    remote: Remote
    location: str  # remote:path

    @property
    def path(self) -> str:
        return self.location.partition(":")[2]

    def describe(self) -> str:
        remote, options = self.remote, self.remote.options
        url = urlsplit(options.get("url") or options.get("endpoint") or "")
        host, port = url.hostname, str(url.port) if url.hostname and url.port else None
        if host is None:  # sftp
            host, port = options.get("host"), options.get("port")
        where = f" at {host}{':' + port if port else ''}" if host else ""
        return f"the {self.role} {remote.name!r} ({remote.type.value}{where})"


@dataclass(frozen=True)
class Plan:
    """What start() found out; what wait() needs to finish the job."""

    single_file: bool
    target: str  # the destination location given to rclone
    algorithm: str | None  # the common hash type, None: sizes only
    no_hash_reason: str  # why there is no common hash


def _glob_escape(name: str) -> str:
    """A file name as a literal in an rclone filter pattern."""
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", name)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


class RcloneDriver(Driver):
    """Copies a folder (`rclone copy`) or a single file (`rclone copyto`)."""

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        spec = context.spec
        self.options = spec.rclone or RcloneOptions()
        self.source = Side("source", spec.remote(spec.source.partition(":")[0]), spec.source)
        self.destination = Side(
            "destination", spec.remote(spec.destination.partition(":")[0]), spec.destination
        )
        self.redact = Redactor()
        self._rclone = Rclone(context.workdir)
        self._log = RunLog(self.redact)
        self._plan: Plan | None = None
        self._copy: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._cancelled = False

    # -- the Driver interface -------------------------------------------------------------

    async def start(self) -> None:
        self.context.workdir.mkdir(parents=True, exist_ok=True)
        remotes = {side.remote.name: side.remote for side in (self.source, self.destination)}
        await write_config(
            self._rclone,
            remotes.values(),
            self.context.secrets,
            self.destination.remote.name,
            self.redact,
        )
        self._stop_if_cancelled()
        entry, _, (algorithm, no_hash_reason) = await run_together(
            self._stat(self.source), self._probe(self.destination), self._common_hash()
        )
        self._stop_if_cancelled()
        single_file = not entry.get("IsDir", False)
        target = self.destination.location
        if single_file and (target.endswith("/") or not self.destination.path):
            target += str(entry.get("Name") or posixpath.basename(self.source.path))
        self._plan = Plan(single_file, target, algorithm, no_hash_reason)
        args = [
            "copyto" if single_file else "copy",
            self.source.location,
            target,
            *LOG_FLAGS,
            *RETRY_FLAGS,
            f"--transfers={self.options.transfers}",
        ]
        if algorithm:
            args.append("--checksum")
        if self.options.bandwidth_limit:
            args.append(f"--bwlimit={self.options.bandwidth_limit}")
        self._copy = await self._rclone.spawn(*args, stdout=False)
        self._reader = asyncio.create_task(self._read(self._copy))
        if self._cancelled:  # cancel() came while rclone was being spawned
            await self._rclone.stop()
            self._stop_if_cancelled()
        log.info(
            "rclone %s started: %s -> %s (checksum: %s)",
            args[0],
            self.source.location,
            target,
            algorithm or "none",
        )

    async def progress(self) -> Progress:
        return self._log.progress

    async def wait(self) -> Outcome:
        if self._copy is None or self._reader is None or self._plan is None:
            return Outcome(Reason.INTERNAL_ERROR, "wait() before a successful start()")
        code = await self._copy.wait()
        await self._reader
        self._rclone.forget(self._copy)
        result = self._log.result()
        if self._cancelled:
            return Outcome(Reason.CANCELLED, "cancelled: rclone stopped", result)
        if code != 0:
            reason = reason_for(code, self._log.errors)
            if reason is Reason.REMOTE_FAILED and result.files and result.errors:
                reason = Reason.PARTIAL_FAILURE
            return Outcome(reason, self._failure(reason, None, self._log), result)
        if not self._plan.single_file and result.files == 0 and self._log.checks == 0:
            return Outcome(
                Reason.NOT_FOUND,
                f"{self.source.describe()} has no files at {self.source.location!r}: "
                "the folder is empty or does not exist",
                result,
            )
        try:
            checksum = await self._verify(self._plan)
        except DriverError as error:
            return Outcome(error.reason, error.message, result)
        result = result.model_copy(update={"checksum": checksum})
        done = f"copied {result.files} files ({result.bytes} bytes)"
        if self._log.checks:
            done += f", {self._log.checks} already there"
        return Outcome(Reason.SUCCEEDED, f"{done}; {self._checksum_text(checksum)}", result)

    async def cancel(self) -> bool:
        """SIGTERM to whatever rclone command runs, then remove the partial files it left."""
        self._cancelled = True
        stopped = await self._rclone.stop()
        log.info("rclone %s", "stopped" if stopped else "did not stop")
        if stopped:
            await self._remove_partials()
        return stopped

    # -- steps ------------------------------------------------------------------------------

    def _stop_if_cancelled(self) -> None:
        if self._cancelled:
            raise DriverError(Reason.CANCELLED, "cancelled before the copy started")

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while True:
            try:
                line = await process.stderr.readline()
            except ValueError:  # a line longer than the limit: skip it
                continue
            if not line:
                return
            self._log.feed(line.decode(errors="replace"))

    async def _run(self, *args: str, within: float = 300) -> tuple[Completed, RunLog]:
        done = await self._rclone.run(*args, "--use-json-log", *RETRY_FLAGS, within=within)
        return done, RunLog(self.redact).feed_all(done.stderr)

    async def _stat(
        self, side: Side, location: str | None = None, *flags: str, doing: str = ""
    ) -> dict[str, Any]:
        """The entry at `location` (default: the side's own); `doing` prefixes a failure."""
        done, run_log = await self._run("lsjson", "--stat", *flags, location or side.location)
        if done.returncode != 0:
            reason = reason_for(done.returncode, run_log.errors)
            raise DriverError(reason, doing + self._failure(reason, side, run_log))
        entry = json.loads(done.stdout)
        if not isinstance(entry, dict):
            raise DriverError(Reason.REMOTE_FAILED, f"{side.describe()}: unexpected answer")
        return entry

    async def _probe(self, side: Side) -> None:
        """Fail early when the destination refuses us; a missing path is fine (created)."""
        done, run_log = await self._run("lsjson", "--stat", side.location)
        reason = reason_for(done.returncode, run_log.errors) if done.returncode else None
        if reason is not None and reason is not Reason.NOT_FOUND:
            raise DriverError(reason, self._failure(reason, side, run_log))

    async def _hashes(self, side: Side) -> list[str]:
        done, run_log = await self._run("backend", "features", f"{side.remote.name}:")
        if done.returncode != 0:
            reason = reason_for(done.returncode, run_log.errors)
            raise DriverError(reason, self._failure(reason, side, run_log))
        hashes = json.loads(done.stdout).get("Hashes") or []
        return [str(name) for name in hashes]

    async def _common_hash(self) -> tuple[str | None, str]:
        if not self.options.checksum:
            return None, "hash verification not requested; sizes compared"
        source, destination = await run_together(
            self._hashes(self.source), self._hashes(self.destination)
        )
        log.info("hash types: source %s, destination %s", source, destination)
        common = [name for name in source if name in destination]
        if common:
            ranked = sorted(
                common,
                key=lambda name: HASH_PREFERENCE.index(name) if name in HASH_PREFERENCE else 99,
            )
            return ranked[0], ""
        for side, hashes in ((self.source, source), (self.destination, destination)):
            if not hashes:
                return None, f"{side.describe()} exposes no hashes to compare; sizes compared"
        return None, (
            f"no hash type in common (source: {', '.join(source)}; destination: "
            f"{', '.join(destination)}); sizes compared"
        )

    async def _remove_partials(self) -> None:
        """A stopped rclone leaves `<name>.<hex>.partial` on some backends (sftp): delete
        those of the files it was writing (by the last stats, at most a second old)."""
        if self._plan is None or self._copy is None:
            return
        remote, _, path = self._plan.target.partition(":")
        if self._plan.single_file:
            folder, names = f"{remote}:{posixpath.dirname(path)}", [posixpath.basename(path)]
        else:
            writing = self._log.stats.get("transferring") or []
            folder, names = self._plan.target, [str(file["name"]) for file in writing]
        if not names:
            return
        patterns = [f"--include=/{_glob_escape(name)}.{{{{[0-9a-f]+}}}}.partial" for name in names]
        done, run_log = await self._run("delete", folder, *patterns, within=CLEANUP_SECONDS)
        if done.returncode != 0:
            log.warning("partial files may be left: %s", "; ".join(run_log.errors))

    async def _verify(self, plan: Plan) -> Checksum:
        if plan.algorithm is None:
            return Checksum(verified=False, message=plan.no_hash_reason)
        if plan.single_file:
            return await self._verify_file(plan.algorithm, plan.target)
        done, run_log = await self._run("check", self.source.location, plan.target, "--one-way")
        differ = run_log.count(DIFFERENCES) + run_log.count(MISSING)
        if differ:
            raise DriverError(
                Reason.CHECKSUM_MISMATCH,
                f"{differ} files differ between source and destination ({plan.algorithm})",
            )
        if done.returncode != 0:
            reason = reason_for(done.returncode, run_log.errors)
            raise DriverError(
                reason, "verifying checksums: " + self._failure(reason, None, run_log)
            )
        unchecked = run_log.count(UNCHECKED)
        if unchecked:
            return Checksum(
                verified=False,
                algorithm=plan.algorithm,
                message=f"{unchecked} files had no {plan.algorithm} on one side; sizes compared",
            )
        return Checksum(verified=True, algorithm=plan.algorithm)

    async def _verify_file(self, algorithm: str, target: str) -> Checksum:
        """Both ends hash the file at once: for a big file each side reads it whole."""
        hashed = ("--hash", f"--hash-type={algorithm}")
        found = await run_together(
            self._stat(self.source, None, *hashed, doing="verifying checksums: "),
            self._stat(self.destination, target, *hashed, doing="verifying checksums: "),
        )
        source, destination = found
        sums = [entry.get("Hashes", {}).get(algorithm) for entry in found]
        if source.get("Size") != destination.get("Size") or (all(sums) and sums[0] != sums[1]):
            raise DriverError(
                Reason.CHECKSUM_MISMATCH,
                f"the copy of {self.source.location!r} differs from the source ({algorithm})",
            )
        if not all(sums):
            return Checksum(
                verified=False,
                algorithm=algorithm,
                message=f"one side returned no {algorithm} for the file; sizes compared",
            )
        return Checksum(verified=True, algorithm=algorithm)

    # -- texts ----------------------------------------------------------------------------

    def _failure(self, reason: Reason, side: Side | None, run_log: RunLog) -> str:
        """`<what> at <where>: <rclone's first error>`, redacted and short."""
        summary = SUMMARIES.get(reason, reason.value)
        if side is None:
            side = self._side_named_in(run_log.errors)
        if side is not None:
            where = side.describe()
        else:
            where = f"the copy from {self.source.describe()} to {self.destination.describe()}"
        detail = _clip(run_log.errors[0]) if run_log.errors else "no error text from rclone"
        return f"{summary} at {where}: {detail}"

    def _side_named_in(self, errors: list[str]) -> Side | None:
        named = [
            side
            for side in (self.source, self.destination)
            if any(f'"{side.remote.name}:' in error for error in errors)
        ]
        return named[0] if len(named) == 1 else None

    @staticmethod
    def _checksum_text(checksum: Checksum) -> str:
        if checksum.verified:
            return f"{checksum.algorithm} checksums verified"
        return checksum.message
