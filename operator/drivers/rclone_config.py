"""The rclone config file of one run, from the request's remotes and the mounted secrets.

Each remote becomes a section: its clear options from the spec, its secret options from the
remotes Secret (`<remote>.<option>`) and, for the destination, the credential in the form of
its type. rclone's own option catalogue (`rclone config providers`) says which options exist
and which are passwords; passwords are obscured through `rclone obscure -` on stdin, because
rclone refuses clear ones. The file is written mode 0600 and every secret, clear or
obscured, is handed to the run's `Redactor`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from datatx_operator import api
from datatx_operator.drivers.base import DriverError, Reason
from datatx_operator.drivers.rclone_cli import Rclone, run_together
from datatx_operator.drivers.redact import Redactor
from datatx_operator.models import Remote, RemoteType

# Options that would run a command in the mover pod, read one of its files or sockets, or
# lend a transfer the pod's own identity. (Any `*_file` option reads a local file.)
FORBIDDEN_OPTIONS = frozenset(
    {"ssh", "bearer_token_command", "unix_socket", "key_use_agent", "env_auth", "profile"}
)
# Options rclone calls sensitive that are names, not secrets: fine in a spec.
CLEAR_SENSITIVE = frozenset(
    {"user", "host", "access_key_id", "sse_kms_key_id", "sse_customer_key_md5"}
)
# Where the destination credential goes, by the destination's type; the first form wins
# when the credential has a colon, the second (a single value) otherwise.
CREDENTIAL_OPTIONS: dict[RemoteType, tuple[tuple[str, str] | None, str | None]] = {
    RemoteType.WEBDAV: (("user", "pass"), "bearer_token"),
    RemoteType.S3: (("access_key_id", "secret_access_key"), None),
    RemoteType.SFTP: (("user", "pass"), None),
}
CREDENTIAL_FORMS = {
    RemoteType.WEBDAV: "a bearer token or user:password",
    RemoteType.S3: "access_key_id:secret_access_key",
    RemoteType.SFTP: "user:password",
}
# How a value is quoted in rclone's config syntax; it keeps spaces, '#' and ';' as they are.
QUOTE = '"""'


@dataclass(frozen=True)
class Backend:
    """What rclone knows about one remote type."""

    name: str
    options: frozenset[str]
    passwords: frozenset[str]  # options rclone reads obscured
    secrets: frozenset[str]  # options whose values belong in a Secret, never in a spec


async def load_backends(rclone: Rclone) -> dict[str, Backend]:
    done = await rclone.run("config", "providers", within=60)
    if done.returncode != 0:
        raise DriverError(Reason.INTERNAL_ERROR, "rclone could not list its backends")
    backends = {}
    for entry in json.loads(done.stdout):
        options = entry.get("Options") or []
        passwords = {option["Name"] for option in options if option.get("IsPassword")}
        sensitive = {option["Name"] for option in options if option.get("Sensitive")}
        backends[entry["Name"]] = Backend(
            name=entry["Name"],
            options=frozenset(option["Name"] for option in options),
            passwords=frozenset(passwords),
            secrets=frozenset((passwords | sensitive) - CLEAR_SENSITIVE),
        )
    return backends


async def obscure(rclone: Rclone, value: str) -> str:
    done = await rclone.run("obscure", "-", stdin=value, within=30)
    obscured = done.stdout.strip()
    if done.returncode != 0 or not obscured:
        raise DriverError(Reason.INTERNAL_ERROR, "rclone could not obscure a password")
    return obscured


def _credential_options(remote: Remote, credential: str) -> dict[str, str]:
    if remote.type not in CREDENTIAL_OPTIONS:
        return {}
    pair, single = CREDENTIAL_OPTIONS[remote.type]
    first, colon, second = credential.partition(":")
    if colon and pair is not None and first and second:
        return {pair[0]: first, pair[1]: second}
    if not colon and single is not None and credential:
        return {single: credential}
    raise DriverError(
        Reason.INVALID_REQUEST,
        f"the destination credential for {remote.type.value} remote {remote.name!r} must be "
        f"{CREDENTIAL_FORMS[remote.type]}",
    )


def _check_option(remote: Remote, backend: Backend, option: str, value: str) -> None:
    where = f"remote {remote.name!r} ({remote.type.value})"
    if option not in backend.options:
        raise DriverError(Reason.INVALID_REQUEST, f"{where} has no option {option!r}")
    if option in FORBIDDEN_OPTIONS or option.endswith("_file"):
        raise DriverError(
            Reason.INVALID_REQUEST, f"option {option!r} of {where} is not allowed in datatx"
        )
    if any(char in value for char in "\r\n\x00") or QUOTE in value:
        # Never echo the value: it may be a secret.
        raise DriverError(
            Reason.INVALID_REQUEST,
            f"option {option!r} of {where} holds a line break, NUL or '{QUOTE}'",
        )


async def remote_section(
    rclone: Rclone,
    backends: Mapping[str, Backend],
    remote: Remote,
    secrets: Mapping[str, str],
    credential: str | None,
    redact: Redactor,
) -> str:
    """One `[name]` section; `credential` only for the destination."""
    if remote.type is RemoteType.LOCAL:
        return local_section(remote)
    backend = backends.get(remote.type.value)
    if backend is None:
        raise DriverError(
            Reason.INVALID_REQUEST,
            f"rclone cannot open remote {remote.name!r} of type {remote.type.value}",
        )
    for option in remote.options:
        if option in backend.secrets:
            raise DriverError(
                Reason.INVALID_REQUEST,
                f"option {option!r} of remote {remote.name!r} is a secret: it belongs in "
                "secretOptions (the remotes Secret), not in the spec",
            )
    values = dict(remote.options)
    secret_values: dict[str, str] = {}
    for option in remote.secret_options:
        key = api.remote_secret_key(remote.name, option)
        if key not in secrets:
            raise DriverError(
                Reason.INVALID_REQUEST,
                f"secret option {option!r} of remote {remote.name!r} is missing from the "
                f"remotes Secret (key {key!r})",
            )
        secret_values[option] = secrets[key]
    redact.add(*secret_values.values())
    if credential is not None:
        given = _credential_options(remote, credential)
        # A user name is no secret; masking it would garble every message that names it.
        redact.add(credential, *(value for option, value in given.items() if option != "user"))
        secret_values.update(given)
    for option, value in {**values, **secret_values}.items():
        _check_option(remote, backend, option, value)
    passwords = [option for option in secret_values if option in backend.passwords]
    obscured = await run_together(*(obscure(rclone, secret_values[o]) for o in passwords))
    redact.add(*obscured)
    values.update(secret_values)
    values.update(zip(passwords, obscured, strict=True))
    lines = [f"[{remote.name}]", f"type = {remote.type.value}"]
    lines += [f"{option} = {QUOTE}{value}{QUOTE}" for option, value in sorted(values.items())]
    return "\n".join(lines) + "\n"


def local_section(remote: Remote) -> str:
    """A `local` remote is an alias of the site's local root, so that `name:/x` can only reach
    files below it (paths have no `..`, and rclone does not follow symlinks by default)."""
    root = os.environ.get(api.LOCAL_ROOT_ENV)
    if not root:
        raise DriverError(
            Reason.INVALID_REQUEST,
            f"remote {remote.name!r} is local, and this site has no local volume for transfers",
        )
    if remote.options or remote.secret_options:
        raise DriverError(Reason.INVALID_REQUEST, f"local remote {remote.name!r} takes no options")
    return f"[{remote.name}]\ntype = alias\nremote = {QUOTE}{root}{QUOTE}\n"


async def write_config(
    rclone: Rclone,
    remotes: Iterable[Remote],
    secrets: Mapping[str, str],
    destination: str | None,
    redact: Redactor,
) -> Path:
    """Write the run's config file with a section per remote; the credential
    (`secrets["credential"]`, when mounted) goes to the remote named `destination`."""
    backends = await load_backends(rclone)
    credential = secrets.get(api.SECRET_KEY_CREDENTIAL)
    sections = await run_together(
        *(
            remote_section(
                rclone,
                backends,
                remote,
                secrets,
                credential if remote.name == destination else None,
                redact,
            )
            for remote in remotes
        )
    )
    path = rclone.config_path
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w") as config:
        config.write("\n".join(sections))
    return path
