"""Rucio: a replication rule for the source DID to the destination RSE expression.

Rucio moves the data itself (its conveyor drives FTS3); the driver creates the rule, follows
its state and lock counts, and deletes it on cancel. Rucio's delete is a soft delete: the
rule gets `expires_at` at most one hour ahead and its judge-cleaner removes it then, so
transfers already queued for it may still run until that time. A rerun of the same
transfer finds its rule again (Rucio refuses a duplicate) and follows it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from datatx_operator.drivers.base import DriverError, Outcome, Reason, RunContext
from datatx_operator.drivers.http import ServiceClient, clip, json_body
from datatx_operator.drivers.service import ServiceDriver, now
from datatx_operator.models import Progress, Result, RucioOptions

log = logging.getLogger(__name__)

SERVICE = "Rucio"
WAITING_STATES = frozenset({"REPLICATING", "INJECT", "WAITING_APPROVAL"})
NOT_FOUND = frozenset({"DataIdentifierNotFound", "ScopeNotFound", "RSENotFound"})
INVALID = frozenset(
    {"InvalidRSEExpression", "InvalidObject", "InvalidValueForKey", "InvalidReplicationRule"}
)
AUTH = frozenset({"CannotAuthenticate", "AccessDenied"})


class RucioDriver(ServiceDriver):
    """One replication rule per transfer; its id is the run's `remote_id`."""

    service = SERVICE

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.rule_id: str | None = None
        self._total_bytes = 0
        self._token: str | None = None

    @property
    def options(self) -> RucioOptions:
        if self.context.spec.rucio is None:
            raise DriverError(Reason.INVALID_REQUEST, "driver rucio needs the rucio options")
        return self.context.spec.rucio

    @property
    def did(self) -> tuple[str, str]:
        scope, _, name = self.context.spec.source.split(":", 1)[1].partition(":")
        return scope, name

    @property
    def rse_expression(self) -> str:
        return self.context.spec.destination.split(":", 1)[1]

    async def _authenticate(self, client: ServiceClient) -> str:
        """The X-Rucio-Auth-Token: an OIDC token as given, or one got for user:password."""
        credential = self.context.secrets.get("credential", "").strip()
        if not credential:
            raise DriverError(Reason.AUTHENTICATION_FAILED, "no Rucio credential was given")
        if self.options.auth_type == "oidc":
            return credential
        username, sep, password = credential.partition(":")
        if not sep:
            raise DriverError(
                Reason.AUTHENTICATION_FAILED, "the Rucio credential must be user:password"
            )
        auth_url = (self.options.auth_endpoint or self.options.endpoint).rstrip("/")
        response = await client.request(
            "GET",
            f"{auth_url}/auth/userpass",
            headers={
                "X-Rucio-Account": self.options.account,
                "X-Rucio-Username": username,
                "X-Rucio-Password": password,
            },
        )
        token = response.headers.get("X-Rucio-Auth-Token")
        if response.status_code != 200 or not token:
            raise _failure(response, f"refused the credentials for account {self.options.account}")
        return str(token)

    async def _call(
        self, method: str, path: str, client: ServiceClient | None = None, **kwargs: Any
    ) -> httpx.Response:
        """A request with the token; a userpass token that expired is renewed once."""
        client = client or self._service()
        if self._token is None:
            self._token = await self._authenticate(client)
        response = await client.request(
            method, path, headers={"X-Rucio-Auth-Token": self._token}, **kwargs
        )
        if response.status_code == 401 and self.options.auth_type == "userpass":
            self._token = await self._authenticate(client)
            response = await client.request(
                method, path, headers={"X-Rucio-Auth-Token": self._token}, **kwargs
            )
        if response.status_code == 401:  # say so, rather than what was being asked for
            raise _failure(
                response,
                f"refused the {self.options.auth_type} token of account {self.options.account}",
            )
        return response

    async def start(self) -> None:
        scope, name = self.did
        did = await self._call(
            "GET",
            f"/dids/{quote(scope, safe='')}/{quote(name, safe='')}",
            params={"dynamic_depth": "FILE"},  # a dataset's or container's bytes: its files'
        )
        if did.status_code != 200:
            raise _failure(did, f"could not find the source DID {scope}:{name}")
        self._total_bytes = int((json_body(did) or {}).get("bytes") or 0)
        body: dict[str, Any] = {
            "dids": [{"scope": scope, "name": name}],
            "account": self.options.account,
            "copies": self.options.copies,
            "rse_expression": self.rse_expression,
            "comment": f"datatx {self.context.namespace}/{self.context.transfer}",
        }
        if self.options.lifetime_seconds is not None:
            body["lifetime"] = self.options.lifetime_seconds
        if self.options.activity is not None:
            body["activity"] = self.options.activity
        async with self._lock:
            if self._cancelled:
                return
            response = await self._call("POST", "/rules/", content=json.dumps(body))
            if response.status_code == 201:
                self.rule_id = str(json_body(response)[0])
                log.info("Rucio rule %s created for %s:%s", self.rule_id, scope, name)
            elif _exception(response)[0] == "DuplicateRule":
                self.rule_id = await self._existing_rule()
                log.info("Rucio rule %s exists already: following it", self.rule_id)
            else:
                raise _failure(
                    response,
                    f"refused the rule for {scope}:{name} to '{self.rse_expression}'",
                )
        self._progress = Progress(total_bytes=self._total_bytes, update_time=now())

    async def _existing_rule(self) -> str:
        """The rule a previous run of this transfer made (same DID, account, RSEs, copies)."""
        scope, name = self.did
        response = await self._call(
            "GET", f"/dids/{quote(scope, safe='')}/{quote(name, safe='')}/rules"
        )
        if response.status_code != 200:
            raise _failure(response, f"could not list the rules of {scope}:{name}")
        for line in response.text.splitlines():
            rule = json.loads(line) if line.strip() else {}
            if (
                rule.get("account") == self.options.account
                and rule.get("rse_expression") == self.rse_expression
                and rule.get("copies") == self.options.copies
            ):
                return str(rule["id"])
        raise DriverError(Reason.REMOTE_FAILED, "Rucio reports a duplicate rule it does not list")

    async def _follow(self) -> Outcome:
        if self.rule_id is None:
            return Outcome(Reason.CANCELLED, "cancelled before the Rucio rule was created")
        while not self._cancelled:
            response = await self._call("GET", f"/rules/{self.rule_id}")
            if response.status_code != 200:
                if _exception(response)[0] == "RuleNotFound":
                    raise DriverError(
                        Reason.REMOTE_FAILED,
                        f"Rucio rule {self.rule_id} was deleted on the Rucio side",
                    )
                raise _failure(response, f"could not tell the state of rule {self.rule_id}")
            rule = json_body(response)
            self._update(rule)
            state = str(rule.get("state"))
            if state == "OK":
                return Outcome(
                    Reason.SUCCEEDED,
                    f"Rucio rule {self.rule_id} is OK: {self._progress.files} replicas",
                    self._result(),
                )
            if state not in WAITING_STATES:
                return self._rule_failed(state, rule)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.options.poll_interval_seconds)
        return Outcome(
            Reason.CANCELLED, f"Rucio rule {self.rule_id} deleted (soft delete)", self._result()
        )

    def _update(self, rule: Mapping[str, Any]) -> None:
        ok = int(rule.get("locks_ok_cnt") or 0)
        total = ok + int(rule.get("locks_replicating_cnt") or 0)
        total += int(rule.get("locks_stuck_cnt") or 0)
        self._progress = Progress(
            files=ok,
            total_files=total,
            bytes=self._total_bytes if total and ok == total else 0,
            total_bytes=self._total_bytes,
            percent=100 * ok // total if total else 0,
            update_time=now(),
        )

    def _rule_failed(self, state: str, rule: Mapping[str, Any]) -> Outcome:
        stuck = int(rule.get("locks_stuck_cnt") or 0)
        detail = rule.get("error") or (f"{stuck} replicas stuck" if stuck else "no error given")
        hint = {
            "STUCK": "Rucio retries stuck rules; a retry of the transfer follows the same rule",
            "SUSPENDED": "suspended by a Rucio administrator",
        }.get(state, "")
        message = f"Rucio rule {self.rule_id} is {state}: {clip(detail)}"
        return Outcome(
            Reason.REMOTE_FAILED,
            message + (f" ({hint})" if hint else ""),
            self._result(errors=max(stuck, 1)),
        )

    def _result(self, errors: int = 0) -> Result:
        return Result(
            files=self._progress.files,
            bytes=self._progress.bytes,
            errors=errors,
            remote_id=self.rule_id,
        )

    async def cancel(self) -> bool:
        async with self._lock:
            self._cancelled = True
            self._stop.set()
            if self.rule_id is None:
                return True
            try:
                async with self._new_client() as client:
                    response = await self._call(
                        "DELETE",
                        f"/rules/{self.rule_id}",
                        client,
                        content=json.dumps({"purge_replicas": None}),
                    )
            except DriverError as error:
                log.error("delete of Rucio rule %s failed: %s", self.rule_id, error.message)
                return False
        if response.status_code == 200:
            log.info("Rucio rule %s deleted (soft delete: it expires within an hour)", self.rule_id)
            return True
        if _exception(response)[0] == "RuleNotFound":
            log.info("Rucio rule %s is gone already", self.rule_id)
            return True
        log.error("Rucio refused to delete rule %s: %s", self.rule_id, _describe(response))
        return False


def _exception(response: httpx.Response) -> tuple[str, str]:
    """Rucio's error body: `{"ExceptionClass", "ExceptionMessage"}`."""
    body = json_body(response)
    if isinstance(body, dict):
        return str(body.get("ExceptionClass", "")), str(body.get("ExceptionMessage", ""))
    header = response.headers.get("ExceptionClass", "")
    return header, response.headers.get("ExceptionMessage", "")


def _describe(response: httpx.Response) -> str:
    name, message = _exception(response)
    if name:
        return clip(f"{name}: {message}")
    return f"{response.status_code} {response.reason_phrase}"


def _failure(response: httpx.Response, doing: str) -> DriverError:
    name, _ = _exception(response)
    if name in NOT_FOUND or (not name and response.status_code == 404):
        reason = Reason.NOT_FOUND
    elif name in INVALID or (not name and response.status_code == 400):
        reason = Reason.INVALID_REQUEST
    elif name in AUTH or response.status_code in (401, 403):
        reason = Reason.AUTHENTICATION_FAILED
    else:
        reason = Reason.REMOTE_FAILED
    return DriverError(reason, f"{SERVICE} {doing} ({_describe(response)})")
