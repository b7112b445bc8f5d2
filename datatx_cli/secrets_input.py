"""Secrets the user hands the CLI (a destination credential, an invite token): from a file,
an environment variable, or a hidden prompt; never from the command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from datatx_cli.errors import CliError, ExitCode
from datatx_cli.submission import read_text


def read_secret(
    file: Path | None, env_name: str, label: str, flag: str, *, required: bool
) -> str | None:
    if file is not None:
        value = read_text(file, label).strip()
    elif os.environ.get(env_name):
        value = os.environ[env_name].strip()
    elif required and sys.stdin.isatty():
        value = str(typer.prompt(label, hide_input=True)).strip()
    elif required:
        raise CliError(f"no {label}: use {flag} or set {env_name}", ExitCode.BAD_INPUT)
    else:
        return None
    if not value:
        raise CliError(f"the {label} is empty", ExitCode.BAD_INPUT)
    return value


def require_secret(file: Path | None, env_name: str, label: str, flag: str) -> str:
    value = read_secret(file, env_name, label, flag, required=True)
    assert value is not None
    return value
