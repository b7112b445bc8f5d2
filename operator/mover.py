"""`datatx-mover --driver <driver>`: one run of one transfer, in its Job's pod.

It GETs its DataTransfer for the spec, reads the mounted Secrets, drives the driver (start,
progress into `status.progress` every few seconds, wait; SIGTERM cancels), then writes the
run's report into `status.lastRun` and the pod's termination message and exits with the
outcome's exit code, which the Job's podFailurePolicy reads. See docs/contracts.md.

Every log line and every text it writes passes a redactor that knows all mounted secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from datatx_operator import api, models
from datatx_operator.drivers import driver_class
from datatx_operator.drivers.base import Driver, DriverError, Outcome, Reason, RunContext
from datatx_operator.drivers.redact import Redactor
from datatx_operator.jobs import CREDENTIAL_MOUNT, REMOTES_MOUNT, TERMINATION_LOG
from datatx_operator.kube import Kube, connect
from datatx_operator.models import MAX_MESSAGE, Progress, Result, RunReport
from datatx_operator.status_writer import StatusWriter

log = logging.getLogger("datatx_operator.mover")


class MoverSettings(BaseSettings):
    """From the environment the Job sets; the paths only change in tests."""

    model_config = SettingsConfigDict(env_prefix="DATATX_", extra="ignore")

    transfer: str = Field(min_length=1, description="DATATX_TRANSFER: the DataTransfer's name.")
    namespace: str = Field(min_length=1, validation_alias="POD_NAMESPACE")
    job: str | None = Field(default=None, description="DATATX_JOB: the Job running us.")
    pod: str = Field(default_factory=socket.gethostname, validation_alias="POD_NAME")
    remotes_dir: Path = Path(REMOTES_MOUNT)
    credential_dir: Path = Path(CREDENTIAL_MOUNT)
    termination_log: Path = Path(TERMINATION_LOG)
    workdir: Path | None = Field(default=None, description="Scratch space; default: a temp dir.")
    progress_interval_seconds: float = Field(default=2.0, gt=0, le=5)
    cancel_wait_seconds: float = Field(
        default=15.0, gt=0, description="How long a cancelled driver may take to wind up."
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the transfer's name, secrets masked."""

    def __init__(self, transfer: str, redact: Redactor) -> None:
        super().__init__()
        self.transfer = transfer
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
            "transfer": self.transfer,
        }
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(entry)


def read_secrets(*directories: Path) -> dict[str, str]:
    """One value per file (a mounted Secret); Kubernetes' own `..data` entries skipped."""
    values: dict[str, str] = {}
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if not path.name.startswith("..") and path.is_file():
                values[path.name] = path.read_text().rstrip("\r\n")
    return values


def _same(one: Progress | None, other: Progress) -> bool:
    return one is not None and one.model_copy(update={"update_time": None}) == other.model_copy(
        update={"update_time": None}
    )


ProgressSink = Callable[[Progress], Awaitable[object]]


async def _drive(driver: Driver, report: ProgressSink, interval: float) -> Outcome:
    """start, then wait, reporting the progress whenever it changed."""
    await driver.start()
    waiting = asyncio.create_task(driver.wait())
    written: Progress | None = None
    while not waiting.done():
        await asyncio.wait({waiting}, timeout=interval)
        progress = await driver.progress()
        if not waiting.done() and not _same(written, progress):
            await report(progress)
            written = progress
    return waiting.result()


async def _guarded(driver: Driver, report: ProgressSink, interval: float) -> Outcome:
    try:
        return await _drive(driver, report, interval)
    except DriverError as error:
        return Outcome(error.reason, error.message)
    except Exception as error:
        log.exception("the driver failed")
        return Outcome(
            Reason.INTERNAL_ERROR, f"internal error in the mover ({type(error).__name__})"
        )


async def supervise(
    driver: Driver, report: ProgressSink, settings: MoverSettings, stop: asyncio.Event
) -> Outcome:
    """Run the driver; when `stop` is set (SIGTERM), cancel it and say whether that worked."""
    work = asyncio.create_task(_guarded(driver, report, settings.progress_interval_seconds))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({work, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if work.done():
        stopping.cancel()
        return work.result()
    log.info("stop requested: cancelling the transfer")
    stopped = await driver.cancel()
    try:
        ended: Outcome | None = await asyncio.wait_for(work, settings.cancel_wait_seconds)
    except TimeoutError:
        ended = None
    result = ended.result if ended is not None else Result()
    if not stopped:
        return Outcome(Reason.CANCEL_FAILED, "cancel requested, but the work did not stop", result)
    if ended is None or (ended.reason is Reason.CANCELLED and not ended.message):
        return Outcome(Reason.CANCELLED, "cancelled on request", result)
    # Cancelled with the driver's own words, or the work had ended before the cancel
    # reached it (an FTS job already terminal): report what really happened.
    return ended


@contextlib.contextmanager
def _workdir(settings: MoverSettings) -> Iterator[Path]:
    """Private scratch space (the rclone config lives here); removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="datatx-", dir=settings.workdir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _load_spec(kube: Kube, settings: MoverSettings) -> models.DataTransferSpec:
    body = await kube.get_transfer(settings.namespace, settings.transfer)
    if body is None:
        raise DriverError(Reason.INVALID_REQUEST, f"transfer {settings.transfer} does not exist")
    try:
        return models.DataTransferSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
            for item in error.errors(include_input=False)
        )
        raise DriverError(Reason.INVALID_REQUEST, f"invalid spec: {problems}") from None


def _driver_for(kind: models.Driver, context: RunContext) -> Driver:
    if context.spec.driver is not kind:
        raise DriverError(
            Reason.INVALID_REQUEST,
            f"the mover was started for driver {kind.value}, the transfer asks for "
            f"{context.spec.driver.value}",
        )
    return driver_class(kind)(context)


async def run(settings: MoverSettings, kind: models.Driver, redact: Redactor) -> Outcome:
    """The whole run; the outcome's report is in the status and the termination log."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    secrets = read_secrets(settings.remotes_dir, settings.credential_dir)
    redact.add(*secrets.values())
    job = settings.job or ""
    outcome = Outcome(Reason.INTERNAL_ERROR, "the mover did not get to run the transfer")
    progress = Progress()
    try:
        api_client = await connect()
    except Exception as error:
        outcome = Outcome(
            Reason.INTERNAL_ERROR, f"cannot reach the Kubernetes API ({type(error).__name__})"
        )
        _write_termination_log(settings, _report(settings, job, outcome, redact))
        return outcome
    async with api_client:
        kube = Kube(api_client)
        writer = StatusWriter(kube, settings.namespace, settings.transfer)
        try:
            spec = await _load_spec(kube, settings)
            job = job or api.job_name(settings.transfer, spec.restarts)
            if spec.cancel_requested:
                raise DriverError(Reason.CANCELLED, "cancelled before the run started")
            with _workdir(settings) as workdir:
                context = RunContext(settings.transfer, settings.namespace, spec, secrets, workdir)
                driver = _driver_for(kind, context)
                log.info("run started: driver %s, job %s, pod %s", kind.value, job, settings.pod)
                outcome = await supervise(driver, writer.progress, settings, stop)
                progress = await driver.progress()
        except DriverError as error:
            outcome = Outcome(error.reason, error.message)
        except Exception as error:
            log.exception("the mover failed")
            outcome = Outcome(Reason.INTERNAL_ERROR, f"internal error ({type(error).__name__})")
        report = _report(settings, job, outcome, redact)
        await writer.finish(report, progress)
    _write_termination_log(settings, report)
    log.info("run ended: %s: %s", report.reason, report.message)
    return outcome


def _report(settings: MoverSettings, job: str, outcome: Outcome, redact: Redactor) -> RunReport:
    message = redact(outcome.message)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    return RunReport(
        job=job,
        pod=settings.pod,
        reason=outcome.reason.value,
        message=message,
        result=outcome.result,
        finish_time=dt.datetime.now(dt.UTC),
    )


def _write_termination_log(settings: MoverSettings, report: RunReport) -> None:
    try:
        settings.termination_log.write_text(
            report.model_dump_json(by_alias=True, exclude_none=True)
        )
    except OSError as error:
        log.warning("cannot write the termination log: %s", error.strerror)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="datatx-mover", description=__doc__.splitlines()[0])
    parser.add_argument("--driver", required=True, choices=[kind.value for kind in models.Driver])
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    redact = Redactor()
    handler = logging.StreamHandler(sys.stderr)
    try:
        settings = MoverSettings()  # from the environment
    except ValidationError as error:
        names = [str(item["loc"][0]) for item in error.errors(include_input=False)]
        variables = ", ".join(n if n.isupper() else f"DATATX_{n.upper()}" for n in names)
        print(f"datatx-mover: bad or missing environment variables: {variables}", file=sys.stderr)
        sys.exit(int(Outcome(Reason.INVALID_REQUEST).exit_code))
    handler.setFormatter(JsonFormatter(settings.transfer, redact))
    logging.basicConfig(level=args.log_level, handlers=[handler], force=True)
    outcome = asyncio.run(run(settings, models.Driver(args.driver), redact))
    sys.exit(int(outcome.exit_code))
