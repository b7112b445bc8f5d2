"""CS3 CreateTransfer targets, as reva sends them, translated into a seed-style request.

reva's form is `davs://<token>@host/prefix?name=<path>`: the WebDAV endpoint is
`https://host/prefix`, the path inside it is `name`, and the userinfo holds the token
(a bearer token, or `user:password`). Plain `davs://`, `dav://`, `https://` and `http://`
URIs without `name` point at `path` on `scheme://host`. The tokens go into Secrets: the
source's into the remotes Secret (`bearer_token`, or `user` + secret `pass`), the
destination's into the credential Secret. No URI is ever echoed in an error, as it may
carry a token. A destination without a token needs an invitee, named in the request's
opaque map (`invitee_email`, `invitee_webhook_url`, `invitee_name`, decoder `plain`);
`request_id` there makes the call idempotent, as in the seed API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from grpc_bridge.errors import InvalidArgumentError

MAX_URI = 4096
MAX_OPAQUE_VALUE = 2048
SCHEMES = {"davs": "https", "https": "https", "dav": "http", "http": "http"}
HOST = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}|[0-9A-Fa-f:.]+)$")
FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")
OPAQUE_KEYS = ("request_id", "invitee_email", "invitee_webhook_url", "invitee_name")
INVITEE_KEYS = {
    "invitee_email": "email",
    "invitee_webhook_url": "webhook_url",
    "invitee_name": "name",
}
SRC, DEST = "src_target_uri", "dest_target_uri"

# Seed request fields -> the CS3 field a caller has to fix.
CS3_FIELDS = (
    ("src", SRC),
    ("dest", DEST),
    ("remotes[0]", SRC),
    ("remotes[1]", DEST),
    ("credential", DEST),
    ("invitee.email", "opaque.invitee_email"),
    ("invitee.webhook_url", "opaque.invitee_webhook_url"),
    ("invitee.name", "opaque.invitee_name"),
    ("invitee", "opaque"),
    ("request_id", "opaque.request_id"),
)


def cs3_field(seed_field: str) -> str:
    for prefix, cs3_name in CS3_FIELDS:
        if seed_field == prefix or seed_field.startswith((prefix + ".", prefix + "[")):
            return cs3_name
    return seed_field


@dataclass(frozen=True)
class Endpoint:
    url: str
    path: str
    token: str | None


def parse_target(field: str, uri: str) -> Endpoint:
    if not uri:
        raise InvalidArgumentError(field, "required")
    if len(uri) > MAX_URI:
        raise InvalidArgumentError(field, f"must be at most {MAX_URI} characters")
    if FORBIDDEN.search(uri):
        raise InvalidArgumentError(field, "must not contain spaces or control characters")
    try:
        parts = urlsplit(uri)
        port = parts.port
        query = parse_qsl(parts.query, keep_blank_values=True, max_num_fields=16)
    except ValueError:
        raise InvalidArgumentError(field, "is not a valid URI") from None
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise InvalidArgumentError(field, f"scheme must be one of {', '.join(sorted(SCHEMES))}")
    host = parts.hostname or ""
    if not HOST.match(host):
        raise InvalidArgumentError(field, "needs a valid host")
    names = [value for key, value in query if key == "name"]
    if len(names) > 1:
        raise InvalidArgumentError(field, "names the path (name=) more than once")
    if names:
        prefix, path = parts.path.rstrip("/"), names[0]
    else:
        prefix, path = "", unquote(parts.path)
    userinfo, at, _ = parts.netloc.rpartition("@")
    token = unquote(userinfo) if at else None
    if token is not None and (not token or FORBIDDEN.search(token)):
        raise InvalidArgumentError(field, "the token in the userinfo is empty or malformed")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return Endpoint(url=f"{scheme}://{netloc}{quote(prefix)}", path=path.lstrip("/"), token=token)


def _source_remote(endpoint: Endpoint) -> dict[str, Any]:
    remote: dict[str, Any] = {"name": "src", "type": "webdav", "options": {"url": endpoint.url}}
    if endpoint.token is not None:
        user, colon, password = endpoint.token.partition(":")
        if colon:
            remote["options"]["user"] = user
            remote["secret_options"] = {"pass": password}
        else:
            remote["secret_options"] = {"bearer_token": endpoint.token}
    return remote


def _opaque_text(opaque: dict[str, tuple[str, bytes]], key: str) -> str | None:
    if key not in opaque:
        return None
    decoder, value = opaque[key]
    if decoder != "plain":
        raise InvalidArgumentError(f"opaque.{key}", "decoder must be plain")
    if len(value) > MAX_OPAQUE_VALUE:
        raise InvalidArgumentError(f"opaque.{key}", f"must be at most {MAX_OPAQUE_VALUE} bytes")
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise InvalidArgumentError(f"opaque.{key}", "must be UTF-8") from None


def _invitee(opaque: dict[str, tuple[str, bytes]]) -> dict[str, str] | None:
    invitee = {
        field: text
        for key, field in INVITEE_KEYS.items()
        if (text := _opaque_text(opaque, key)) is not None
    }
    return invitee or None


def request_data(
    src_uri: str, dest_uri: str, opaque: dict[str, tuple[str, bytes]]
) -> dict[str, Any]:
    """The seed-style request for `drafts.build_draft` (with `cs3_field` as its renamer)."""
    source = parse_target(SRC, src_uri)
    destination = parse_target(DEST, dest_uri)
    invitee = _invitee(opaque)
    if destination.token is None and invitee is None:
        raise InvalidArgumentError(
            DEST,
            "carries no token (davs://<token>@host/...) and opaque names no invitee "
            "(invitee_email or invitee_webhook_url)",
        )
    request_id = _opaque_text(opaque, "request_id")
    return {
        "request_id": request_id,
        "src": f"src:{source.path}",
        "dest": f"dest:{destination.path}",
        "remotes": [
            _source_remote(source),
            {"name": "dest", "type": "webdav", "options": {"url": destination.url}},
        ],
        "credential": destination.token,
        "invitee": invitee,
    }
