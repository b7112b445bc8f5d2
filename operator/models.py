"""The DataTransfer resource: spec (the validated request) and status (the truth).

These pydantic models are the single source of the CRD schema (see `crd.py`), of the
bridge's request validation and of the operator's reads and writes. Secrets never appear
here: a spec names Secrets by reference only.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

MAX_PATH = 4096
MAX_OPTION_VALUE = 2048
MAX_MESSAGE = 1024


def error_reason(error: ErrorDetails) -> str:
    """A validation error in plain words: our validators' text without pydantic's prefix."""
    return error["msg"].removeprefix("Value error, ")


# A name of a remote as rclone accepts it in a config section.
RemoteName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
OptionKey = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
OptionValue = Annotated[str, Field(max_length=MAX_OPTION_VALUE)]
ShortText = Annotated[str, Field(max_length=MAX_MESSAGE)]
SecretName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=253)]


def _check_location(value: str) -> str:
    remote, sep, path = value.partition(":")
    if not sep or not remote:
        raise ValueError("must have the form remote:path")
    if "\x00" in path or "\n" in path:
        raise ValueError("path must not contain NUL or newline characters")
    if any(part == ".." for part in path.split("/")):
        raise ValueError("path must not contain '..' segments")
    return value


# `remote:path`, the remote being one of the request's remotes.
Location = Annotated[
    str,
    Field(min_length=3, max_length=MAX_PATH, pattern=r"^[a-z][a-z0-9_-]{0,31}:"),
    AfterValidator(_check_location),
]


class Model(BaseModel):
    """camelCase on the wire (Kubernetes convention), snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
        validate_default=True,
    )

    def dump(self) -> dict[str, Any]:
        """The JSON form for the Kubernetes API: camelCase, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Phase(StrEnum):
    """Where a transfer is. The seed's four first, then the rest of the flow."""

    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    FINISHED = "Finished"
    INVITE_NOT_ACCEPTED_ON_TIME = "InviteNotAcceptedOnTime"
    WAITING_FOR_INVITE_ACCEPTANCE = "WaitingForInviteAcceptance"
    INVITE_DECLINED = "InviteDeclined"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset(
    {
        Phase.FINISHED,
        Phase.INVITE_NOT_ACCEPTED_ON_TIME,
        Phase.INVITE_DECLINED,
        Phase.FAILED,
        Phase.CANCELLED,
    }
)


class Driver(StrEnum):
    RCLONE = "rclone"
    FTS = "fts"
    RUCIO = "rucio"
    FILESENDER = "filesender"


class RemoteType(StrEnum):
    WEBDAV = "webdav"
    S3 = "s3"
    SFTP = "sftp"
    LOCAL = "local"
    RUCIO = "rucio"
    FILESENDER = "filesender"


# rclone's nextcloud vendor uploads big files in chunks under the user's /dav/uploads/USER,
# which it finds from a url ending in /dav/files/USER; any other url fails every run.
NEXTCLOUD_FILES_URL = re.compile(r"^https?://.+/dav/files/[^/]+/?$")

# Remote types that name a service rather than storage rclone can open.
SERVICE_REMOTE_TYPES = frozenset({RemoteType.RUCIO, RemoteType.FILESENDER})


class Remote(Model):
    """What rclone needs to build one remote; secret option values live in a Secret."""

    name: RemoteName
    type: RemoteType
    options: dict[OptionKey, OptionValue] = Field(default_factory=dict, max_length=32)
    secret_options: list[OptionKey] = Field(
        default_factory=list,
        max_length=16,
        description="Names of options whose values are in the remotes Secret.",
    )

    @model_validator(mode="after")
    def _no_option_twice(self) -> Remote:
        both = set(self.options) & set(self.secret_options)
        if both:
            raise ValueError(f"options {sorted(both)} are given both in clear and as secret")
        return self

    @model_validator(mode="after")
    def _nextcloud_url_names_the_user(self) -> Remote:
        options = self.options
        chunked = options.get("nextcloud_chunk_size", "").strip() != "0"
        if (
            self.type is RemoteType.WEBDAV
            and options.get("vendor") == "nextcloud"
            and chunked
            and "url" in options
            and not NEXTCLOUD_FILES_URL.match(options["url"])
        ):
            raise ValueError(
                "a nextcloud url must end in /remote.php/dav/files/USER (not /remote.php/webdav),"
                " or set nextcloud_chunk_size to 0 to upload without chunks"
            )
        return self


class RcloneOptions(Model):
    checksum: bool = Field(
        default=True, description="Verify checksums when both ends share a hash type."
    )
    transfers: int = Field(default=4, ge=1, le=64, description="Files copied in parallel.")
    bandwidth_limit: str | None = Field(
        default=None, pattern=r"^[0-9]{1,6}(\.[0-9]{1,3})?[KMG]?$", max_length=16
    )


HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=512)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]


def _request_retries() -> Any:
    return Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of one HTTP request after a network error or a 5xx answer, "
        "with exponential backoff, before the run fails.",
    )


class FtsOptions(Model):
    """FTS3: source and destination are webdav remotes whose `url` FTS can reach."""

    endpoint: HttpUrl = Field(description="FTS3 REST endpoint, e.g. https://fts3.example.org:8446")
    verify_checksum: str = Field(default="both", pattern=r"^(both|source|target|none)$")
    overwrite: bool = False
    retry: int = Field(default=0, ge=0, le=10, description="FTS retries per file.")
    priority: int = Field(default=3, ge=1, le=5)
    poll_interval_seconds: int = Field(default=5, ge=1, le=300)
    request_retries: int = _request_retries()


class RucioOptions(Model):
    """Rucio: source `remote:scope:name` (a DID), destination `remote:<RSE expression>`."""

    endpoint: HttpUrl
    auth_endpoint: HttpUrl | None = Field(
        default=None, description="Rucio auth server; the endpoint when unset."
    )
    account: Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,25}$")]
    auth_type: str = Field(default="userpass", pattern=r"^(userpass|oidc)$")
    copies: int = Field(default=1, ge=1, le=10)
    lifetime_seconds: int | None = Field(default=None, ge=60, le=10 * 365 * 86400)
    activity: Annotated[str, Field(pattern=r"^[A-Za-z0-9 _-]{1,50}$")] | None = None
    poll_interval_seconds: int = Field(default=5, ge=1, le=300)
    request_retries: int = _request_retries()


class FileSenderOptions(Model):
    """FileSender: the files of the source are uploaded, the recipients get the link."""

    endpoint: HttpUrl = Field(
        description="The REST base, e.g. https://filesender.example.org/rest.php"
    )
    remote_user: Annotated[str, Field(min_length=1, max_length=256)]
    sender: Email | None = Field(default=None, description="The `from` address; the user's own.")
    recipients: list[Email] = Field(min_length=1, max_length=32)
    subject: ShortText = ""
    message: ShortText = ""
    expires_days: int = Field(default=7, ge=1, le=365)
    request_retries: int = _request_retries()


class Invitee(Model):
    """Who is asked for consent when the requester holds no destination credential."""

    name: Annotated[str, Field(max_length=256)] = ""
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)] | None = None
    webhook_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)] | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Invitee:
        if not self.email and not self.webhook_url:
            raise ValueError("an invitee needs an email or a webhookUrl")
        return self


class InviteResponse(StrEnum):
    ACCEPTED = "Accepted"
    DECLINED = "Declined"


class Invite(Model):
    invitee: Invitee
    response: InviteResponse | None = Field(
        default=None, description="Set once by the bridge when the invitee answers."
    )


class CredentialsRef(Model):
    """Secrets owned by the transfer; the only place its secrets live."""

    remotes: SecretName | None = Field(
        default=None, description="Secret with the secret options of the remotes."
    )
    credential: SecretName | None = Field(
        default=None, description="Secret with the destination credential."
    )


class Requester(Model):
    user: Annotated[str, Field(min_length=1, max_length=256)]
    groups: list[Annotated[str, Field(max_length=256)]] = Field(default_factory=list, max_length=64)


class DataTransferSpec(Model):
    """The validated request. Immutable but for the fields that record answers."""

    source: Location
    destination: Location
    remotes: list[Remote] = Field(min_length=1, max_length=8)
    driver: Driver = Driver.RCLONE
    rclone: RcloneOptions | None = None
    fts: FtsOptions | None = None
    rucio: RucioOptions | None = None
    file_sender: FileSenderOptions | None = None
    credentials_ref: CredentialsRef = Field(default_factory=CredentialsRef)
    invite: Invite | None = None
    requester: Requester
    retries: int = Field(default=2, ge=0, le=10, description="Job retries after a failure.")
    timeout_seconds: int = Field(
        default=86400, ge=10, le=30 * 86400, description="Deadline of one run."
    )
    restarts: int = Field(default=0, ge=0, le=100, description="Bumped by RetryTransfer.")
    cancel_requested: bool = Field(
        default=False, description="Stop the current run; only a retry (restarts + 1) clears it."
    )
    destroy_requested: bool = Field(
        default=False,
        description="DestroyTransfer: stop and destroy the credentials at once; final.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> DataTransferSpec:
        names = [remote.name for remote in self.remotes]
        if len(names) != len(set(names)):
            raise ValueError("remote names must be unique")
        for field in ("source", "destination"):
            remote = getattr(self, field).partition(":")[0]
            if remote not in names:
                raise ValueError(f"{field} names remote {remote!r}, which is not in remotes")
        options_field = DRIVER_OPTIONS_FIELD[self.driver]
        if options_field != "rclone" and getattr(self, options_field) is None:
            raise ValueError(f"driver {self.driver.value} needs {to_camel(options_field)}")
        self._check_remote_types()
        if self.credentials_ref.credential is None and self.invite is None:
            raise ValueError("without a credential an invite (invitee) is required")
        return self

    def _check_remote_types(self) -> None:
        """Each driver reads only some kinds of remote; say which at request time."""
        source = self.remote(self.source.partition(":")[0])
        destination = self.remote(self.destination.partition(":")[0])
        if self.driver is Driver.FTS:
            for field, remote in (("source", source), ("destination", destination)):
                if remote.type is not RemoteType.WEBDAV or "url" not in remote.options:
                    raise ValueError(f"driver fts needs a webdav remote with a url as {field}")
        elif self.driver is Driver.RUCIO:
            if source.type is not RemoteType.RUCIO or destination.type is not RemoteType.RUCIO:
                raise ValueError("driver rucio needs rucio remotes as source and destination")
            scope, sep, name = self.source.split(":", 1)[1].partition(":")
            if not (scope and sep and name):
                raise ValueError("driver rucio needs the source as remote:scope:name")
            if not self.destination.split(":", 1)[1].strip():
                raise ValueError("driver rucio needs the destination as remote:<RSE expression>")
        elif self.driver is Driver.FILESENDER:
            if destination.type is not RemoteType.FILESENDER:
                raise ValueError("driver filesender needs a filesender remote as destination")
            if source.type in SERVICE_REMOTE_TYPES:
                raise ValueError("driver filesender reads its source through rclone")
        elif source.type in SERVICE_REMOTE_TYPES or destination.type in SERVICE_REMOTE_TYPES:
            raise ValueError(f"driver {self.driver.value} cannot use rucio or filesender remotes")

    def remote(self, name: str) -> Remote:
        return next(remote for remote in self.remotes if remote.name == name)


DRIVER_OPTIONS_FIELD = {
    Driver.RCLONE: "rclone",
    Driver.FTS: "fts",
    Driver.RUCIO: "rucio",
    Driver.FILESENDER: "file_sender",
}


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    type: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z]{0,63}$")]
    status: ConditionStatus
    reason: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]{0,127}$")]
    message: ShortText = ""
    last_transition_time: dt.datetime
    observed_generation: int = Field(default=0, ge=0)


class Progress(Model):
    bytes: int = Field(default=0, ge=0)
    total_bytes: int = Field(default=0, ge=0)
    files: int = Field(default=0, ge=0)
    total_files: int = Field(default=0, ge=0)
    rate_bytes_per_second: int = Field(default=0, ge=0)
    eta_seconds: int | None = Field(default=None, ge=0)
    percent: int = Field(default=0, ge=0, le=100)
    update_time: dt.datetime | None = None


class Checksum(Model):
    verified: bool
    algorithm: Annotated[str, Field(max_length=32)] = ""
    message: ShortText = ""


class Result(Model):
    """What the last run reported when it ended."""

    files: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    checksum: Checksum | None = None
    remote_id: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="The FTS job, Rucio rule or FileSender transfer id."
    )


class RunReport(Model):
    """How one mover pod's run ended, written by the mover itself just before it exits."""

    job: Annotated[str, Field(max_length=63)]
    pod: Annotated[str, Field(max_length=253)]
    reason: Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]{0,127}$")]
    message: ShortText = ""
    result: Result = Field(default_factory=Result)
    finish_time: dt.datetime


class InviteStatus(Model):
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="Hash of the single-use token; cleared once used or dead."
    )
    deadline: dt.datetime | None = None
    sent_time: dt.datetime | None = None
    notified: list[Annotated[str, Field(max_length=32)]] = Field(
        default_factory=list, max_length=4, description="Channels that delivered the invite."
    )


class DataTransferStatus(Model):
    phase: Phase = Phase.PENDING
    reason: Annotated[str, Field(pattern=r"^([A-Z][A-Za-z0-9]{0,127})?$")] = ""
    message: ShortText = ""
    conditions: list[Condition] = Field(default_factory=list, max_length=16)
    progress: Progress = Field(default_factory=Progress)
    result: Result | None = None
    last_run: RunReport | None = None
    attempts: int = Field(default=0, ge=0)
    job: Annotated[str, Field(max_length=63)] | None = None
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None
    invite: InviteStatus | None = None
    cache_expiry: dt.datetime | None = None
    observed_generation: int = Field(default=0, ge=0)
