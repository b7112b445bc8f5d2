"""Building a DoTransfer request from files and flags.

Remotes come from a YAML (or JSON) file, because their secret options must not be typed on
a command line:

    src:
      type: webdav
      options: {url: "https://a.example.org/dav", vendor: other, user: alice}
      secret_options: {pass: "..."}
    dst:
      type: s3
      options: {provider: Other, endpoint: "https://s3.example.org"}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import yaml
from google.protobuf import struct_pb2
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from datatx.v1 import datatx_pb2 as pb
from datatx_cli.errors import CliError, ExitCode


def _text(value: object) -> object:
    """YAML reads `port: 22` as a number and `true` as a bool; rclone wants text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Option = Annotated[str, BeforeValidator(_text)]


class RemoteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    options: dict[str, Option] = {}
    secret_options: dict[str, Option] = {}


def read_text(path: Path, what: str) -> str:
    """A file's text; `-` reads standard input."""
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text()
    except OSError as error:
        raise CliError(f"{what} {path}: {error.strerror}", ExitCode.BAD_INPUT) from None


def load_remotes(path: Path) -> list[pb.Remote]:
    try:
        raw = yaml.safe_load(read_text(path, "remotes file"))
    except yaml.YAMLError as error:
        raise CliError(f"remotes file {path}: not YAML ({error})", ExitCode.BAD_INPUT) from None
    if not isinstance(raw, dict) or not raw:
        raise CliError(
            f"remotes file {path}: expected a mapping of remote name to remote", ExitCode.BAD_INPUT
        )
    remotes = []
    for name, body in raw.items():
        try:
            remote = RemoteFile.model_validate(body)
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in (name, *problem["loc"]))
            raise CliError(
                f"remotes file {path}: {where}: {problem['msg']}", ExitCode.BAD_INPUT
            ) from None
        remotes.append(
            pb.Remote(
                name=str(name),
                type=remote.type,
                options=remote.options,
                secret_options=remote.secret_options,
            )
        )
    return remotes


def driver_options(pairs: list[str]) -> struct_pb2.Struct | None:
    """`key=value` pairs; a value that reads as JSON (numbers, true, lists) is taken as such."""
    if not pairs:
        return None
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--option {pair!r}: expected key=value", ExitCode.BAD_INPUT)
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    struct = struct_pb2.Struct()
    struct.update(options)
    return struct
