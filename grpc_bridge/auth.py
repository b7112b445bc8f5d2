"""Who is calling: reva's `x-access-token` JWTs and static bearer tokens.

reva mints HS256 JWTs with a secret shared by its services; the claims carry the CS3 user
(`user.id.idp`, `user.id.opaque_id`, `user.groups`, ...). Static tokens are
for other clients (the CLI, scripts); the file maps each token to a user. Tokens are kept
only as SHA-256 digests in memory and never logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jwt
import yaml
from pydantic import BaseModel, ConfigDict, Field

from grpc_bridge.errors import UnauthenticatedError

MAX_TOKEN_LENGTH = 8192
MAX_GROUPS_KEPT = 64

Text256 = Annotated[str, Field(max_length=256)]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `(idp, user)` identifies the owner of a transfer."""

    user: str
    idp: str = ""
    groups: tuple[str, ...] = ()
    is_admin: bool = False
    owner_key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "owner_key", owner_key(self.idp, self.user))


def owner_key(idp: str, user: str) -> str:
    """A label-safe digest of the owner identity, for selection and ownership checks."""
    return hashlib.sha256(f"{idp}\n{user}".encode()).hexdigest()[:40]


class _StaticUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Annotated[str, Field(min_length=1, max_length=256)]
    idp: Text256 = ""
    groups: list[Text256] = Field(default_factory=list, max_length=1024)


class _RevaUserId(BaseModel):
    model_config = ConfigDict(extra="ignore")

    idp: Text256 = ""
    opaque_id: Annotated[str, Field(min_length=1, max_length=256)]


class _RevaUser(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: _RevaUserId
    groups: list[Text256] | None = Field(default=None, max_length=1024)


class _RevaClaims(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user: _RevaUser


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_static_tokens(path: Path) -> dict[str, _StaticUser]:
    """Read `{token: {user, idp, groups}}`; keep only digests of the tokens."""
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of token to user")
    return {_digest(str(token)): _StaticUser.model_validate(user) for token, user in raw.items()}


class Authenticator:
    def __init__(
        self,
        *,
        admin_group: str,
        jwt_secret: bytes | None = None,
        jwt_audience: str = "reva",
        static_tokens: Mapping[str, _StaticUser] | None = None,
    ) -> None:
        self._admin_group = admin_group
        self._jwt_secret = jwt_secret
        self._jwt_audience = jwt_audience
        self._static = dict(static_tokens or {})

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Principal:
        """The caller named by `x-access-token` or `authorization: Bearer`; raise otherwise."""
        headers = {key.lower(): value for key, value in metadata or () if isinstance(value, str)}
        access_token = headers.get("x-access-token")
        if access_token is not None:
            return self._from_jwt(access_token)
        authorization = headers.get("authorization")
        if authorization is None:
            raise UnauthenticatedError(
                "no credentials: send x-access-token or authorization: Bearer"
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError("authorization must be 'Bearer <token>'")
        static = self._static.get(_digest(token)) if len(token) <= MAX_TOKEN_LENGTH else None
        if static is not None:
            return self._principal(static.user, static.idp, static.groups)
        if token.count(".") == 2:
            return self._from_jwt(token)
        raise UnauthenticatedError("invalid token")

    def _from_jwt(self, token: str) -> Principal:
        if self._jwt_secret is None:
            raise UnauthenticatedError("JWT logins are not enabled")
        if len(token) > MAX_TOKEN_LENGTH:
            raise UnauthenticatedError("invalid token")
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._jwt_secret,
                algorithms=["HS256"],
                audience=self._jwt_audience,
                options={"require": ["exp"]},
            )
            claims = _RevaClaims.model_validate(payload)
        except jwt.ExpiredSignatureError as error:
            raise UnauthenticatedError("token expired") from error
        except Exception as error:  # whatever a malformed token makes the parser raise
            raise UnauthenticatedError("invalid token") from error
        user = claims.user
        return self._principal(user.id.opaque_id, user.id.idp, user.groups or [])

    def _principal(self, user: str, idp: str, groups: Sequence[str]) -> Principal:
        return Principal(
            user=user, idp=idp, groups=tuple(groups), is_admin=self._admin_group in groups
        )


def stored_groups(principal: Principal) -> list[str]:
    """The groups recorded in a transfer's spec (bounded; authorization uses live tokens)."""
    return sorted(set(principal.groups))[:MAX_GROUPS_KEPT]
