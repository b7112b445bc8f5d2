"""The reconciler: from a transfer's current state to its next state, idempotently.

Every trigger (a watch event of the transfer or of its Job, a due deadline, a freed slot)
ends in `reconcile(key)`, which reads the transfer fresh under a per-transfer lock and
takes the steps its state calls for. Nothing lives only in memory: a restarted operator
reads the same CRs and Jobs and carries on, adopting Jobs by their deterministic names.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from pydantic import ValidationError

from datatx_operator import api, invites, jobs
from datatx_operator.admission import Admission
from datatx_operator.drivers.base import Reason
from datatx_operator.index import Key, TransferIndex, key_of
from datatx_operator.kube import JsonDict, Kube
from datatx_operator.metrics import Metrics
from datatx_operator.models import (
    DataTransferSpec,
    DataTransferStatus,
    InviteResponse,
    Phase,
    RunReport,
    error_reason,
)
from datatx_operator.notifiers import DeliveryError, Notifier, deliver
from datatx_operator.settings import OperatorSettings
from datatx_operator.transitions import (
    ACCEPTED,
    CREDENTIALS_DESTROYED,
    INVITED,
    RUNNING,
    SUCCEEDED,
    StatusPatch,
    now,
    parse_time,
    rfc3339,
)

log = logging.getLogger("datatx.operator")
RETRY_DELAYS = (1, 2, 5, 10, 30, 60)


@dataclass
class Transfer:
    """One transfer as read from the API, parsed."""

    body: JsonDict
    spec: DataTransferSpec | None = None
    spec_error: str = ""
    status: DataTransferStatus = field(default_factory=DataTransferStatus)

    def __post_init__(self) -> None:
        try:
            self.spec = DataTransferSpec.model_validate(self.body.get("spec", {}))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "spec"
            self.spec_error = f"spec.{where}: {error_reason(first)}"
        self.status = DataTransferStatus.model_validate(self.body.get("status") or {})

    @property
    def key(self) -> Key:
        return key_of(self.body)

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])

    @property
    def has_status(self) -> bool:
        return bool(self.body.get("status"))

    def kopf_body(self) -> kopf.Body:
        return kopf.Body(cast(kopf.RawBody, self.body))

    def patch(self) -> StatusPatch:
        return StatusPatch(self.status, int(self.body["metadata"].get("generation", 1)))

    def current_job(self) -> str:
        assert self.spec is not None
        return api.job_name(self.name, self.spec.restarts)

    def report_of(self, job: str) -> RunReport | None:
        report = self.status.last_run
        return report if report is not None and report.job == job else None


def run_succeeded(job: JsonDict, report: RunReport | None) -> bool:
    """The Job is Complete, or its mover already reported success: the data is copied and
    checked then, and waiting for the pod's exit and the Job controller would only add
    seconds to every transfer."""
    succeeded = report is not None and report.reason == Reason.SUCCEEDED.value
    return succeeded or job_condition(job, "Complete") is not None


def job_condition(job: JsonDict, kind: str) -> JsonDict | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        notifiers: list[Notifier],
        metrics: Metrics,
        index: TransferIndex,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.notifiers = notifiers
        self.metrics = metrics
        self.index = index
        self.admission = Admission(
            index, settings.max_running_total, settings.max_running_per_namespace
        )
        self._locks: dict[Key, asyncio.Lock] = {}
        self._failures: dict[Key, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- triggers -------------------------------------------------------------------------

    def trigger(self, key: Key, delay: float = 0) -> None:
        """Reconcile `key` soon, in the background; failures are retried with backoff."""
        task = asyncio.create_task(self._reconcile_later(key, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reconcile_later(self, key: Key, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            await self.reconcile(key)
        except Exception:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            retry_in = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
            log.exception("reconciling %s/%s failed; retrying in %ss", *key, retry_in)
            self.trigger(key, retry_in)
        else:
            self._failures.pop(key, None)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def reconcile(self, key: Key) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            body = await self.kube.get_transfer(*key)
            if body is None:
                self._locks.pop(key, None)
                return
            self.index.observe(body)
            await self._step(Transfer(body))

    # -- the state machine ----------------------------------------------------------------

    async def _step(self, transfer: Transfer) -> None:
        spec = transfer.spec
        if spec is None:
            if transfer.status.phase is not Phase.FAILED:
                await self._end(
                    transfer, transfer.patch(), Phase.FAILED, "InvalidSpec", transfer.spec_error
                )
            return
        phase = transfer.status.phase
        if phase.terminal:
            await self._after_end(transfer, spec)
        elif spec.cancel_requested:
            await self._cancel(transfer, spec)
        elif (
            spec.credentials_ref.credential is None or phase is Phase.WAITING_FOR_INVITE_ACCEPTANCE
        ):
            await self._invite(transfer, spec)
        else:
            await self._run(transfer, spec)

    async def _after_end(self, transfer: Transfer, spec: DataTransferSpec) -> None:
        status = transfer.status
        retry = (
            status.phase in (Phase.FAILED, Phase.CANCELLED)
            and not spec.cancel_requested
            and not spec.destroy_requested
            and status.job is not None
            and status.job != transfer.current_job()
        )
        if retry:
            patch = transfer.patch().phase(Phase.PENDING, "Retrying", "retry requested")
            patch.set(
                startTime=None, completionTime=None, cacheExpiry=None, result=None, attempts=0
            )
            patch.condition(SUCCEEDED, False, "Retrying", "a new run was requested")
            await self._write(transfer, patch, "Retrying", "retry requested: new run")
            self.trigger(transfer.key)
        elif status.cache_expiry is not None and status.cache_expiry <= now():
            log.info("cache time of %s/%s is over; deleting it", *transfer.key)
            await self.kube.delete_transfer(*transfer.key)
        elif spec.destroy_requested and not transfer.patch().has_condition(CREDENTIALS_DESTROYED):
            patch = transfer.patch()
            await self._destroy_credentials(transfer, spec, patch)
            await self._write(transfer, patch)

    # -- invites --------------------------------------------------------------------------

    async def _invite(self, transfer: Transfer, spec: DataTransferSpec) -> None:
        assert spec.invite is not None, "the spec validator requires an invite without credential"
        invite = transfer.status.invite
        if spec.invite.response is InviteResponse.DECLINED:
            self.metrics.invites.labels("declined").inc()
            patch = transfer.patch().condition(ACCEPTED, False, "InviteDeclined", "declined")
            await self._end(
                transfer, patch, Phase.INVITE_DECLINED, "InviteDeclined", "the invitee declined"
            )
        elif spec.invite.response is InviteResponse.ACCEPTED and spec.credentials_ref.credential:
            self.metrics.invites.labels("accepted").inc()
            patch = transfer.patch().phase(Phase.PENDING, "InviteAccepted", "invite accepted")
            patch.set(invite={"tokenSha256": None})
            patch.condition(ACCEPTED, True, "InviteAccepted", "the invitee gave a credential")
            await self._write(transfer, patch, "InviteAccepted", "the invitee accepted")
            self.trigger(transfer.key)
        elif invite is not None and invite.deadline is not None and invite.deadline <= now():
            self.metrics.invites.labels("expired").inc()
            patch = transfer.patch().condition(
                ACCEPTED, False, "InviteExpired", "no answer in time"
            )
            await self._end(
                transfer,
                patch,
                Phase.INVITE_NOT_ACCEPTED_ON_TIME,
                "InviteExpired",
                "the invite was not accepted before its deadline",
            )
        elif invite is None or invite.sent_time is None:
            await self._send_invite(transfer, spec)

    async def _send_invite(self, transfer: Transfer, spec: DataTransferSpec) -> None:
        """Store the hash first, then send: a crash in between sends a fresh token later."""
        previous = transfer.status.invite
        deadline = (
            previous.deadline
            if previous is not None and previous.deadline is not None
            else now() + dt.timedelta(seconds=self.settings.invite_max_wait_seconds)
        )
        token = invites.new_token()
        patch = transfer.patch().phase(
            Phase.WAITING_FOR_INVITE_ACCEPTANCE, "InviteSending", "sending the invite"
        )
        patch.set(invite={"tokenSha256": invites.token_hash(token), "deadline": rfc3339(deadline)})
        await self._write(transfer, patch)
        invitation = invites.Invitation(
            transfer.name, transfer.namespace, spec, token, deadline, self.settings.invite_base_url
        )
        try:
            channels = await deliver(self.notifiers, invitation)
        except DeliveryError as error:
            self.metrics.invites.labels("delivery_failed").inc()
            kopf.warn(transfer.kopf_body(), reason="InviteUndelivered", message=str(error))
            raise
        self.metrics.invites.labels("sent").inc()
        patch = transfer.patch().phase(
            Phase.WAITING_FOR_INVITE_ACCEPTANCE,
            "InviteSent",
            f"waiting for the invitee until {rfc3339(deadline)}",
        )
        patch.set(invite={"sentTime": rfc3339(now()), "notified": channels})
        patch.condition(INVITED, True, "InviteSent", f"sent by {', '.join(channels)}")
        await self._write(transfer, patch, "InviteSent", f"invite sent by {', '.join(channels)}")

    # -- runs -----------------------------------------------------------------------------

    async def _run(self, transfer: Transfer, spec: DataTransferSpec) -> None:
        job_name = transfer.current_job()
        if transfer.status.job != job_name:
            await self._admit(transfer, spec, job_name)
            return
        job = await self.kube.read_job(transfer.namespace, job_name)
        if job is None:
            # Deleted behind our back: the run is lost, start it again under the same name.
            await self._admit(transfer, spec, job_name)
            return
        await self._follow(transfer, spec, job)

    async def _admit(self, transfer: Transfer, spec: DataTransferSpec, job_name: str) -> None:
        async with self.admission.lock:
            decision = self.admission.decide(transfer.key)
            if decision.start:
                await self.kube.create_job(
                    transfer.namespace, jobs.build_job(transfer.body, spec, self.settings)
                )
                self.index.claim(transfer.key)
        patch = transfer.patch()
        if decision.start:
            self.metrics.runs_started.labels(spec.driver.value).inc()
            patch.phase(Phase.PENDING, "Starting", f"Job {job_name} created").set(
                job=job_name, attempts=0
            )
            if not patch.has_condition(ACCEPTED):
                patch.condition(
                    ACCEPTED, True, "CredentialGiven", "a credential came with the request"
                )
            await self._write(transfer, patch, "Starting", f"created Job {job_name}")
        elif (
            transfer.status.reason != "Queued"
            or transfer.status.message != f"queued: {decision.why}"
        ):
            patch.phase(Phase.PENDING, "Queued", f"queued: {decision.why}")
            patch.condition(RUNNING, False, "Queued", decision.why)
            await self._write(transfer, patch, "Queued", decision.why)

    async def _follow(self, transfer: Transfer, spec: DataTransferSpec, job: JsonDict) -> None:
        job_status = job.get("status") or {}
        report = transfer.report_of(job["metadata"]["name"])
        counted = sum(int(job_status.get(k) or 0) for k in ("failed", "succeeded", "active"))
        # A loaded Job controller can count the pod only after its mover has reported; the
        # report alone proves one attempt.
        attempts = max(counted, 1 if report else 0)
        complete = run_succeeded(job, report)
        failed = job_condition(job, "Failed")
        patch = transfer.patch().set(attempts=max(attempts, transfer.status.attempts))
        started = transfer.status.start_time
        if started is None and (complete or failed or int(job_status.get("ready") or 0) > 0):
            # The Job controller's clock, not the moment we noticed: a run that ended fast
            # or while the operator was down still gets its start time.
            started = parse_time(job_status.get("startTime")) or now()
            patch.set(startTime=rfc3339(started))
        if complete:
            result = report.result if report else transfer.status.result
            if result is not None:
                patch.set(result=result.dump())
                self.metrics.bytes_moved.labels(spec.driver.value).inc(result.bytes)
            patch.condition(SUCCEEDED, True, "Finished", "all data copied")
            message = report.message if report and report.message else "transfer finished"
            await self._end(transfer, patch, Phase.FINISHED, "Finished", message, started)
        elif failed:
            reason, message = _failure(failed, report, spec)
            if report:
                patch.set(result=report.result.dump())
            patch.condition(SUCCEEDED, False, reason, message)
            await self._end(
                transfer,
                patch,
                Phase.FAILED,
                reason,
                f"{message} (after {attempts} attempts)",
                started,
            )
        elif (
            int(job_status.get("ready") or 0) > 0 and transfer.status.phase is not Phase.IN_PROGRESS
        ):
            patch.phase(Phase.IN_PROGRESS, "Running", f"attempt {attempts} running")
            patch.condition(RUNNING, True, "Running", f"attempt {attempts}")
            await self._write(transfer, patch, "Running", f"attempt {attempts} running")
        elif attempts != transfer.status.attempts:
            await self._write(transfer, patch)

    # -- cancel ---------------------------------------------------------------------------

    async def _cancel(self, transfer: Transfer, spec: DataTransferSpec) -> None:
        """Stop the run: delete its Job (the pod gets SIGTERM and cancels remote work), then
        end as Cancelled once the Job is gone, with what the mover reported."""
        job_name = transfer.status.job
        job = await self.kube.read_job(transfer.namespace, job_name) if job_name else None
        if job is not None and not run_succeeded(job, transfer.report_of(job["metadata"]["name"])):
            if not job["metadata"].get("deletionTimestamp"):
                await self.kube.delete_job(transfer.namespace, job["metadata"]["name"])
                patch = transfer.patch().phase(
                    transfer.status.phase, "Stopping", "stopping the running Job"
                )
                await self._write(transfer, patch, "Stopping", f"deleting Job {job_name}")
            return
        if job is not None:
            # It finished before the cancel arrived: it stays Finished.
            await self._follow(transfer, spec, job)
            return
        report = transfer.report_of(job_name) if job_name else None
        reason = (
            report.reason
            if report and report.reason in ("Cancelled", "CancelFailed")
            else "Cancelled"
        )
        message = report.message if report and report.message else "cancelled on request"
        patch = transfer.patch().condition(SUCCEEDED, False, reason, message)
        if transfer.status.invite and transfer.status.invite.token_sha256:
            patch.set(invite={"tokenSha256": None})
        await self._end(transfer, patch, Phase.CANCELLED, reason, message)

    # -- endings --------------------------------------------------------------------------

    async def _end(
        self,
        transfer: Transfer,
        patch: StatusPatch,
        phase: Phase,
        reason: str,
        message: str,
        started: dt.datetime | None = None,
    ) -> None:
        """Enter a terminal phase: stamp times, start the cache clock, destroy what is no
        longer needed, free the slot and let the next queued transfer in. `started` is the
        run's start when this same patch sets it."""
        spec = transfer.spec
        ended = now()
        patch.phase(phase, reason, message)
        patch.set(
            completionTime=rfc3339(ended),
            cacheExpiry=rfc3339(ended + dt.timedelta(seconds=self.settings.cache_max_seconds)),
        )
        if transfer.status.invite and transfer.status.invite.token_sha256:
            patch.set(invite={"tokenSha256": None})
        if transfer.status.job:
            patch.condition(RUNNING, False, reason, message)
        keeps_credentials = phase in (Phase.FAILED, Phase.CANCELLED) and not (
            spec is not None and spec.destroy_requested
        )
        if spec is not None and not keeps_credentials:
            await self._destroy_credentials(transfer, spec, patch)
        if spec is not None:
            self.metrics.finished.labels(phase.value, spec.driver.value).inc()
            started = started or transfer.status.start_time
            if started is not None:
                self.metrics.duration.labels(spec.driver.value, phase.value).observe(
                    (ended - started).total_seconds()
                )
        event_type = "Normal" if phase is Phase.FINISHED else "Warning"
        await self._write(transfer, patch, reason, message, event_type)
        self.index.release(transfer.key)
        for key in self.admission.next_in_line():
            self.trigger(key)

    async def _destroy_credentials(
        self, transfer: Transfer, spec: DataTransferSpec, patch: StatusPatch
    ) -> None:
        for secret in (spec.credentials_ref.remotes, spec.credentials_ref.credential):
            if secret:
                await self.kube.delete_secret(transfer.namespace, secret)
        patch.condition(
            CREDENTIALS_DESTROYED, True, "Destroyed", "the transfer's Secrets are deleted"
        )

    async def _write(
        self,
        transfer: Transfer,
        patch: StatusPatch,
        event_reason: str = "",
        event_message: str = "",
        event_type: str = "Normal",
    ) -> None:
        await self.kube.patch_status(transfer.namespace, transfer.name, patch.render())
        if event_reason:
            kopf.event(
                transfer.kopf_body(),
                type=event_type,
                reason=event_reason,
                message=event_message,
            )


def _failure(
    condition: dict[str, Any], report: RunReport | None, spec: DataTransferSpec
) -> tuple[str, str]:
    """Reason and message of a failed Job: the mover's own words, unless the Job controller
    stopped it at the deadline (then the mover only saw a SIGTERM, like a cancel)."""
    job_reason = str(condition.get("reason") or "")
    if job_reason == "DeadlineExceeded":
        return "Timeout", f"the run took longer than its timeoutSeconds ({spec.timeout_seconds} s)"
    if report:
        return report.reason, report.message
    reason = {
        "BackoffLimitExceeded": "RetriesExhausted",
        "PodFailurePolicy": "PermanentFailure",
    }.get(job_reason, "RemoteFailed")
    return reason, str(condition.get("message", "the run failed"))
