"""Where the CLI finds the bridge and its login: flags, then `DATATX_*` environment
variables, then the config file (`~/.config/datatx/config.toml`), then the files `make dev-up`
writes (`.cluster/bridge-address` and `.cluster/bridge-token` below the current directory).

The token is a secret: it is read from the environment or a file, never taken on the
command line (where `ps` and shell history would show it), and never printed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from datatx_cli.errors import CliError, ExitCode

ENV_PREFIX = "DATATX_"
LOCAL_CLUSTER = Path(".cluster")
FIELDS = (
    "address",
    "token",
    "token_file",
    "tls",
    "ca_file",
    "client_cert_file",
    "client_key_file",
    "timeout",
)
LOGIN = ("token", "token_file")


class ClientSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(description="The bridge's gRPC address, host:port.")
    token: SecretStr | None = None
    token_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0, le=3600, description="Seconds per call.")

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not host:port")
        return value

    @property
    def secure(self) -> bool:
        return self.tls or self.ca_file is not None or self.client_cert_file is not None

    def bearer(self) -> str | None:
        """The login token, from `token` or `token_file`; None: no login."""
        if self.token is not None:
            return self.token.get_secret_value().strip() or None
        if self.token_file is None:
            return None
        try:
            return self.token_file.read_text().strip() or None
        except OSError as error:
            raise CliError(f"token file {self.token_file}: {error.strerror}") from None


def default_config_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "datatx" / "config.toml"


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        name: environ[ENV_PREFIX + name.upper()]
        for name in FIELDS
        if environ.get(ENV_PREFIX + name.upper())
    }


def _from_file(path: Path, explicit: bool) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        if explicit:
            raise CliError(f"config file {path}: not found", ExitCode.BAD_INPUT) from None
        return {}
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CliError(f"config file {path}: {error}", ExitCode.BAD_INPUT) from None
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise CliError(
            f"config file {path}: unknown setting {', '.join(unknown)}", ExitCode.BAD_INPUT
        )
    return values


def _local_cluster(cwd: Path) -> dict[str, Any]:
    """What `make dev-up` left for clients in the current directory."""
    values: dict[str, Any] = {}
    address = cwd / LOCAL_CLUSTER / "bridge-address"
    if address.is_file():
        values["address"] = address.read_text().strip()
    token = cwd / LOCAL_CLUSTER / "bridge-token"
    if token.is_file():
        values["token_file"] = token
    return values


def load(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_path: Path | None = None,
    cwd: Path | None = None,
) -> ClientSettings:
    """Merge the layers, highest first; the login comes whole from the highest layer
    that has one, so a token file given as a flag is not overridden by `DATATX_TOKEN`."""
    environ = os.environ if environ is None else environ
    explicit = config_path is not None or bool(environ.get(ENV_PREFIX + "CONFIG"))
    path = config_path or Path(environ.get(ENV_PREFIX + "CONFIG") or default_config_path(environ))
    layers = [
        {name: value for name, value in flags.items() if value is not None},
        _from_env(environ),
        _from_file(path, explicit),
        _local_cluster(cwd or Path.cwd()),
    ]
    merged: dict[str, Any] = {}
    for layer in reversed(layers):
        merged.update({name: value for name, value in layer.items() if name not in LOGIN})
    login = next((layer for layer in layers if any(name in layer for name in LOGIN)), {})
    merged.update({name: login[name] for name in LOGIN if name in login})
    if "address" not in merged:
        raise CliError(
            "no bridge address: use --address, DATATX_ADDRESS or `address` in " + str(path),
            ExitCode.BAD_INPUT,
        )
    try:
        return ClientSettings.model_validate(merged)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise CliError(f"setting {where}: {problem['msg']}", ExitCode.BAD_INPUT) from None
