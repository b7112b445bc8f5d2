"""What both APIs do to transfers, whatever their wire format.

Creates a CR and its Secrets, reads from the watch-fed cache, and makes the few later spec
writes the contract allows (invite answers, cancel/destroy, retry). Ownership: a caller
sees only the transfers it created (others read as NOT_FOUND), admins see all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from datatx_operator import api
from datatx_operator.models import InviteResponse, Phase
from grpc_bridge.auth import Principal
from grpc_bridge.cache import TransferCache
from grpc_bridge.drafts import Draft
from grpc_bridge.errors import (
    AlreadyExistsError,
    BridgeError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from grpc_bridge.kube import ConflictError, Kube, RejectedError
from grpc_bridge.records import (
    ANNOTATION_OWNER_IDP,
    ANNOTATION_SHARE_ID,
    TransferRecord,
)

log = logging.getLogger(__name__)

TRANSFER_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,46}[a-z0-9])?$")
INVITE_TOKEN = re.compile(r"^[\x21-\x7e]{1,256}$")
CREDENTIAL = re.compile(r"^[^\x00-\x1f\x7f]{1,4096}$")
MAX_RESTARTS = 100
NO_TOKEN = "0" * 64


def check_transfer_id(value: str, field: str = "transfer_id") -> str:
    if not value:
        raise InvalidArgumentError(field, "required")
    if not TRANSFER_ID.match(value):
        raise InvalidArgumentError(field, "must be a transfer id (lowercase DNS label, at most 48)")
    return value


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def transfer_name(principal: Principal, request_id: str | None) -> str:
    """Random, or derived from (user, request_id) so that a repeat meets its first CR."""
    if request_id is None:
        return f"dt-{secrets.token_hex(6)}"
    return f"dt-{_digest(principal.idp, principal.user, request_id)[:12]}"


def request_hash(principal: Principal, request_id: str) -> str:
    return _digest("request", principal.idp, principal.user, request_id)[:40]


class Stop(StrEnum):
    CANCELLED = "cancelled"  # the operator confirmed the stop
    ENDED = "ended"  # it had ended before (finished, failed, ...) or is gone
    CANCEL_FAILED = "cancel failed"  # the remote job could not be stopped
    TIMED_OUT = "timed out"  # the operator did not confirm in time


@dataclass(frozen=True)
class CancelOutcome:
    stop: Stop
    record: TransferRecord
    text: str

    @property
    def stopped(self) -> bool:
        return self.stop in (Stop.CANCELLED, Stop.ENDED)


class Transfers:
    def __init__(
        self,
        kube: Kube,
        cache: TransferCache,
        *,
        cancel_timeout_seconds: float,
        stopping: asyncio.Event,
    ) -> None:
        self._kube = kube
        self._cache = cache
        self._cancel_timeout = cancel_timeout_seconds
        self._stopping = stopping

    # -- create -----------------------------------------------------------------------

    async def create(
        self, principal: Principal, draft: Draft, *, share_id: str | None = None
    ) -> tuple[TransferRecord, bool]:
        """The new transfer and True, or the one this request_id made before and False."""
        name = transfer_name(principal, draft.request_id)
        labels = {api.LABEL_MANAGED_BY: api.MANAGED_BY, api.LABEL_OWNER_HASH: principal.owner_key}
        if draft.request_id is not None:
            labels[api.LABEL_REQUEST_HASH] = request_hash(principal, draft.request_id)
        annotations = {api.ANNOTATION_CREATED: dt.datetime.now(dt.UTC).isoformat()}
        if principal.idp:
            annotations[ANNOTATION_OWNER_IDP] = principal.idp
        if share_id:
            annotations[ANNOTATION_SHARE_ID] = share_id
        body = {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": draft.spec_for(name),
        }
        try:
            record = self._cache.put(await self._kube.create_transfer(body))
        except ConflictError:
            return await self._existing(principal, draft, name), False
        try:
            await self._store_secrets(record, draft)
        except BridgeError:
            raise await self._abandon(record, draft) from None
        log.info("transfer %s created by %s", name, principal.user)
        return record, True

    async def _abandon(self, record: TransferRecord, draft: Draft) -> UnavailableError:
        """A CR whose Secrets could not be stored must not run. With a request_id, a repeat
        of the call completes it (the operator waits a while for late Secrets); without
        one, it is destroyed at once. (The bridge may not delete CRs: least privilege.)"""
        if draft.request_id is not None:
            return UnavailableError(
                "could not store the transfer's secrets; repeat the call with the same request_id"
            )
        try:
            patch = {"cancelRequested": True, "destroyRequested": True}
            self._cache.put(await self._kube.patch_transfer_spec(record.name, patch))
        except BridgeError:
            log.exception("could not destroy the incomplete transfer %s", record.name)
        return UnavailableError("could not store the transfer's secrets; it will not run")

    async def _existing(self, principal: Principal, draft: Draft, name: str) -> TransferRecord:
        if draft.request_id is None:
            raise UnavailableError("transfer id collision; try again")
        record = await self._lookup(name)
        if (
            record is None
            or record.owner_key != principal.owner_key
            or record.request_hash != request_hash(principal, draft.request_id)
        ):
            raise AlreadyExistsError("request_id: already used; choose another")
        if not (record.destroy_requested or record.phase.terminal):
            await self._store_secrets(record, draft, repair=True)
        return record

    async def _store_secrets(
        self, record: TransferRecord, draft: Draft, *, repair: bool = False
    ) -> None:
        """The transfer's Secrets; `repair` completes those a failed first attempt left out."""
        writes = []
        if draft.remote_secrets:
            writes.append((api.remotes_secret_name(record.name), draft.remote_secrets))
        if draft.credential and record.credential_ref:
            secret = {api.SECRET_KEY_CREDENTIAL: draft.credential}
            writes.append((api.credential_secret_name(record.name), secret))

        async def store(secret_name: str, data: dict[str, str]) -> None:
            try:
                await self._kube.create_secret(
                    secret_name, data, transfer=record.name, transfer_uid=record.uid
                )
            except ConflictError:
                if not repair:
                    raise

        await asyncio.gather(*(store(name, data) for name, data in writes))

    # -- read -------------------------------------------------------------------------

    async def _lookup(self, name: str) -> TransferRecord | None:
        """The cache; on a miss one GET (another replica may have just created it)."""
        record = self._cache.get(name)
        if record is None:
            obj = await self._kube.get_transfer(name)
            if obj is not None:
                record = self._cache.put(obj)
        return record

    async def get(self, principal: Principal, name: str) -> TransferRecord:
        record = await self._lookup(name)
        if record is None or not (principal.is_admin or record.owner_key == principal.owner_key):
            raise NotFoundError(f"transfer {name} not found")
        return record

    def visible(self, principal: Principal) -> list[TransferRecord]:
        """The caller's transfers (all for admins), oldest first."""
        records = (
            self._cache.all() if principal.is_admin else self._cache.owned_by(principal.owner_key)
        )
        return sorted(records, key=lambda record: (record.created, record.name))

    async def watch(self, principal: Principal, name: str) -> AsyncIterator[TransferRecord]:
        """The transfer now and after every change, until it ends or goes."""
        record: TransferRecord | None = await self.get(principal, name)
        with self._cache.subscribe(name) as changed:
            while record is not None:
                yield record
                if record.phase.terminal:
                    return
                await changed.wait()
                changed.clear()
                if self._stopping.is_set():
                    raise UnavailableError("the server is shutting down; watch again")
                record = self._cache.get(name)

    async def _wait_until(
        self, name: str, done: Callable[[TransferRecord], bool], seconds: float
    ) -> TransferRecord | None:
        """The first version of `name` that is `done` (None: gone); None after `seconds`."""
        with self._cache.subscribe(name) as changed:
            try:
                async with asyncio.timeout(seconds):
                    while True:
                        record = self._cache.get(name)
                        if record is None or done(record):
                            return record
                        if self._stopping.is_set():
                            return None
                        await changed.wait()
                        changed.clear()
            except TimeoutError:
                return None

    # -- stop -------------------------------------------------------------------------

    async def cancel(self, principal: Principal, name: str, *, destroy: bool) -> CancelOutcome:
        """Stop the work (destroy: and the credentials); stopped only once the operator
        says so. A transfer that already ended has nothing to stop."""
        record = await self.get(principal, name)
        if not destroy and record.phase.terminal:
            stop = Stop.CANCELLED if record.phase is Phase.CANCELLED else Stop.ENDED
            return CancelOutcome(stop, record, f"the transfer already ended ({record.phase})")
        patch: dict[str, Any] = {}
        if not record.cancel_requested:
            patch["cancelRequested"] = True
        if destroy and not record.destroy_requested:
            patch["destroyRequested"] = True
        if patch:
            try:
                record = self._cache.put(await self._kube.patch_transfer_spec(name, patch))
            except NotFoundError:
                raise NotFoundError(f"transfer {name} not found") from None
            log.info(
                "%s of %s requested by %s", "destroy" if destroy else "cancel", name, principal.user
            )

        def stopped(current: TransferRecord) -> bool:
            return current.phase.terminal or current.cancel_failed

        final = await self._wait_until(name, stopped, self._cancel_timeout)
        if final is None and self._cache.get(name) is None:
            # The operator deleted it meanwhile (its cache time ended): nothing runs any more.
            return CancelOutcome(Stop.ENDED, record, "the transfer was stopped and is gone")
        if final is None:
            current = self._cache.get(name) or record
            waited = f"the operator did not confirm the stop within {self._cancel_timeout:g} s"
            if self._stopping.is_set():
                waited = "the stop was requested, but this server shut down before it was confirmed"
            return CancelOutcome(Stop.TIMED_OUT, current, waited)
        if final.cancel_failed:
            message = final.status.message or "the remote job could not be stopped"
            return CancelOutcome(Stop.CANCEL_FAILED, final, f"cancel failed: {message}")
        if final.phase is Phase.CANCELLED:
            text = "cancelled" + (" and its credentials destroyed" if destroy else "")
            return CancelOutcome(Stop.CANCELLED, final, text)
        return CancelOutcome(Stop.ENDED, final, f"the transfer had already ended ({final.phase})")

    async def retry(self, principal: Principal, name: str) -> TransferRecord:
        record = await self.get(principal, name)
        if record.phase not in (Phase.FAILED, Phase.CANCELLED):
            raise FailedPreconditionError(
                f"only a failed or cancelled transfer can be retried; it is {record.phase}"
            )
        if record.destroy_requested:
            raise FailedPreconditionError("a destroyed transfer cannot be retried")
        if record.restarts >= MAX_RESTARTS:
            raise FailedPreconditionError(f"retried {MAX_RESTARTS} times already")
        patch = {"restarts": record.restarts + 1, "cancelRequested": False}
        try:
            obj = await self._kube.patch_transfer_spec(
                name, patch, resource_version=record.resource_version
            )
        except (ConflictError, RejectedError):
            raise FailedPreconditionError("the transfer changed meanwhile; try again") from None
        log.info("retry %d of %s requested by %s", record.restarts + 1, name, principal.user)
        return self._cache.put(obj)

    # -- invites ----------------------------------------------------------------------

    async def open_invite(self, name: str, token: str) -> TransferRecord:
        """The transfer whose invite `token` opens, still open; checked in constant time."""
        check_transfer_id(name)
        if not INVITE_TOKEN.match(token):
            raise InvalidArgumentError("invite_token", "must be 1-256 printable ASCII characters")
        record = self._cache.get(name)
        if record is None:
            obj = await self._kube.get_transfer(name)
            record = self._cache.put(obj) if obj is not None else None
        invite = record.status.invite if record is not None else None
        expected = invite.token_sha256 if invite is not None else None
        presented = hashlib.sha256(token.encode()).hexdigest()
        matches = hmac.compare_digest(presented, expected or NO_TOKEN)
        if record is None or invite is None or expected is None or not matches:
            raise PermissionDeniedError("no open invite for this transfer and token")
        deadline = invite.deadline
        if deadline is not None and deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=dt.UTC)
        if deadline is not None and dt.datetime.now(dt.UTC) >= deadline:
            raise FailedPreconditionError("the invite has expired")
        if record.invite_response is not None:
            raise FailedPreconditionError("the invite was already answered")
        if record.phase is not Phase.WAITING_FOR_INVITE_ACCEPTANCE:
            raise FailedPreconditionError(
                f"the transfer is not waiting for an answer; it is {record.phase}"
            )
        return record

    async def accept_invite(self, name: str, token: str, credential: str) -> TransferRecord:
        if not CREDENTIAL.match(credential):
            raise InvalidArgumentError(
                "credential", "must be 1-4096 characters without control characters"
            )
        record = await self.open_invite(name, token)
        secret_name = api.credential_secret_name(name)
        try:
            await self._kube.create_secret(
                secret_name,
                {api.SECRET_KEY_CREDENTIAL: credential},
                transfer=name,
                transfer_uid=record.uid,
            )
        except ConflictError:
            raise FailedPreconditionError("the invite was already used") from None
        patch = {
            "invite": {"response": InviteResponse.ACCEPTED.value},
            "credentialsRef": {"credential": secret_name},
        }
        try:
            obj = await self._kube.patch_transfer_spec(name, patch)
        except BridgeError as error:
            try:  # let the invitee try again: the invite was not used
                await self._kube.delete_secret(secret_name)
            except BridgeError:
                log.exception("could not remove %s after a failed accept", secret_name)
            if isinstance(error, RejectedError):
                raise FailedPreconditionError("the invite was already answered") from None
            raise
        log.info("invite of %s accepted", name)
        return self._cache.put(obj)

    async def decline_invite(self, name: str, token: str) -> TransferRecord:
        await self.open_invite(name, token)
        patch = {"invite": {"response": InviteResponse.DECLINED.value}}
        try:
            obj = await self._kube.patch_transfer_spec(name, patch)
        except RejectedError:
            raise FailedPreconditionError("the invite was already answered") from None
        log.info("invite of %s declined", name)
        return self._cache.put(obj)
