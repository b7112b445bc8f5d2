"""Requests of both APIs validated into a `Draft`: the spec to write and its secrets.

Validation runs before anything is created. The request's own shape is checked by
`TransferRequest` (field names as in the seed proto, every size bounded), the result by the
operator's `DataTransferSpec`, the same model the CRD is generated from. Any failure becomes
`InvalidArgumentError` naming the request field (in the caller's API's terms) and the reason;
the reason never quotes the value, which may be secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from datatx_operator import api
from datatx_operator.models import (
    DRIVER_OPTIONS_FIELD,
    MAX_OPTION_VALUE,
    CredentialsRef,
    DataTransferSpec,
    Driver,
    Location,
    OptionKey,
    OptionValue,
    RemoteName,
    RemoteType,
    error_reason,
)
from grpc_bridge.auth import Principal, stored_groups
from grpc_bridge.errors import InvalidArgumentError

MAX_CREDENTIAL = 4096
MAX_OPTIONS_JSON = 16 * 1024
MAX_ERRORS_SHOWN = 5
PLACEHOLDER_NAME = "dt-000000000000"

NoControl = r"^[^\x00-\x1f\x7f]+$"
Credential = Annotated[str, Field(min_length=1, max_length=MAX_CREDENTIAL, pattern=NoControl)]
SecretValue = Annotated[str, Field(min_length=1, max_length=MAX_OPTION_VALUE, pattern=NoControl)]
RequestId = Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,128}$")]

# What a spec field is called in the seed request, for error messages.
SPEC_FIELD_IN_REQUEST = {
    "source": "src",
    "destination": "dest",
    "invite": "invitee",
    "requester": "caller identity",
    **{field_name: "options" for field_name in DRIVER_OPTIONS_FIELD.values()},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RemoteRequest(_Strict):
    name: RemoteName
    type: RemoteType
    options: dict[OptionKey, OptionValue] = Field(default_factory=dict, max_length=32)
    secret_options: dict[OptionKey, SecretValue] = Field(default_factory=dict, max_length=16)


class InviteeRequest(_Strict):
    name: Annotated[str, Field(max_length=256)] = ""
    email: str | None = None
    webhook_url: str | None = None


class TransferRequest(_Strict):
    """The seed DoTransfer request; the CS3 CreateTransfer request is translated into it."""

    src: Location
    dest: Location
    remotes: list[RemoteRequest] = Field(min_length=1, max_length=8)
    credential: Credential | None = None
    invitee: InviteeRequest | None = None
    driver: Driver = Driver.RCLONE
    options: dict[str, Any] | None = None
    request_id: RequestId | None = None
    retries: int | None = None
    timeout_seconds: int | None = None

    @field_validator("options")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value)) > MAX_OPTIONS_JSON:
            raise ValueError(f"must be at most {MAX_OPTIONS_JSON} bytes as JSON")
        return value


@dataclass(frozen=True)
class Draft:
    """A validated transfer, not yet named: `body(name)` gives the CR to create."""

    spec: DataTransferSpec
    remote_secrets: dict[str, str]
    credential: str | None
    request_id: str | None

    def spec_for(self, name: str) -> dict[str, Any]:
        refs = CredentialsRef(
            remotes=api.remotes_secret_name(name) if self.remote_secrets else None,
            credential=api.credential_secret_name(name) if self.credential else None,
        )
        return self.spec.model_copy(update={"credentials_ref": refs}).dump()


def _aliases(model: type[BaseModel], found: dict[str, str]) -> dict[str, str]:
    """camelCase alias -> snake_case name of every field of `model` and its sub-models."""
    for name, info in model.model_fields.items():
        found[info.alias or name] = name
        for kind in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(kind, type) and issubclass(kind, BaseModel) and kind is not model:
                _aliases(kind, found)
    return found


FIELD_NAMES = _aliases(DataTransferSpec, {})


def _segment(part: int | str, is_key: bool) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    text = re.sub(r"[^\x21-\x7e]", "?", part)[:64]
    return "." + (text if is_key else FIELD_NAMES.get(part, text))


def field_path(loc: Sequence[int | str]) -> str:
    """('remotes', 0, 'secretOptions') -> 'remotes[0].secret_options'; dict keys as given."""
    parts = list(loc)
    path = "".join(
        _segment(part, index + 1 < len(parts) and parts[index + 1] == "[key]")
        for index, part in enumerate(parts)
        if part != "[key]"
    )
    return path.lstrip(".") or "request"


def invalid(described: Sequence[tuple[str, str]]) -> InvalidArgumentError:
    """One InvalidArgumentError for (field, reason) pairs: the first one, all shown (bounded)."""
    first_field, first_reason = described[0]
    error = InvalidArgumentError(first_field, first_reason)
    shown = [f"{field}: {reason}" for field, reason in described[:MAX_ERRORS_SHOWN]]
    if len(described) > MAX_ERRORS_SHOWN:
        shown.append(f"and {len(described) - MAX_ERRORS_SHOWN} more")
    error.message = "; ".join(shown)
    return error


def _spec_field(loc: Sequence[int | str]) -> str:
    """A spec error's location in request terms: source -> src, fts.endpoint -> options.endpoint."""
    path = field_path(loc)
    head, sep, rest = path.partition(".")
    name, bracket, index = head.partition("[")
    if name == "invite" and rest.startswith("invitee"):
        rest = rest.removeprefix("invitee").lstrip(".")
        sep = "." if rest else ""
    return f"{SPEC_FIELD_IN_REQUEST.get(name, name)}{bracket}{index}{sep}{rest}"


DRIVER_NEEDS = re.compile(r"^driver (\w+) needs (\w+)$")


def _spec_error(error: ErrorDetails) -> tuple[str, str]:
    """Root-level spec rules name no field; attribute them to the one they are about."""
    reason = error_reason(error)
    if error["loc"]:
        return _spec_field(error["loc"]), reason
    needs = DRIVER_NEEDS.match(reason)
    if needs:
        return "options", f"required for driver {needs.group(1)}"
    if reason.startswith("driver "):
        return "driver", reason
    return "request", reason


def _check_request(request: TransferRequest) -> None:
    """Cross-field rules, each naming its field."""
    names = [remote.name for remote in request.remotes]
    if len(names) != len(set(names)):
        raise InvalidArgumentError("remotes", "remote names must be unique")
    for index, remote in enumerate(request.remotes):
        both = set(remote.options) & set(remote.secret_options)
        if both:
            raise InvalidArgumentError(
                f"remotes[{index}].secret_options", f"{sorted(both)} also given in options"
            )
    for field_name in ("src", "dest"):
        remote = getattr(request, field_name).partition(":")[0]
        if remote not in names:
            raise InvalidArgumentError(
                field_name, f"names remote {remote!r}, which is not in remotes"
            )
    if request.credential is None and request.invitee is None:
        raise InvalidArgumentError("invitee", "required when no credential is given")


def _spec_data(request: TransferRequest, principal: Principal) -> dict[str, Any]:
    data: dict[str, Any] = {
        "source": request.src,
        "destination": request.dest,
        "remotes": [
            {
                "name": remote.name,
                "type": remote.type,
                "options": remote.options,
                "secretOptions": sorted(remote.secret_options),
            }
            for remote in request.remotes
        ],
        "driver": request.driver,
        "credentialsRef": {
            "remotes": PLACEHOLDER_NAME if any(r.secret_options for r in request.remotes) else None,
            "credential": PLACEHOLDER_NAME if request.credential else None,
        },
        "requester": {"user": principal.user, "groups": stored_groups(principal)},
    }
    if request.options is not None:
        data[DRIVER_OPTIONS_FIELD[request.driver]] = request.options
    if request.invitee is not None:
        invitee = request.invitee.model_dump(exclude_none=True, exclude_defaults=True)
        data["invite"] = {"invitee": invitee}
    if request.retries is not None:
        data["retries"] = request.retries
    if request.timeout_seconds is not None:
        data["timeoutSeconds"] = request.timeout_seconds
    return data


def build_draft(
    data: Mapping[str, Any], principal: Principal, rename: Callable[[str], str] = str
) -> Draft:
    """Validate a request (seed field names); `rename` maps them to the caller's API."""
    try:
        request = TransferRequest.model_validate(data)
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        raise invalid([(rename(field_path(e["loc"])), error_reason(e)) for e in errors]) from None
    try:
        _check_request(request)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(rename(error.field), error.reason) from None
    try:
        spec = DataTransferSpec.model_validate(_spec_data(request, principal))
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        described = [_spec_error(e) for e in errors]
        raise invalid([(rename(field), reason) for field, reason in described]) from None
    secrets = {
        api.remote_secret_key(remote.name, option): value
        for remote in request.remotes
        for option, value in remote.secret_options.items()
    }
    return Draft(
        spec=spec,
        remote_secrets=secrets,
        credential=request.credential,
        request_id=request.request_id,
    )
