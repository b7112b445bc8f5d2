"""The `datatx` CLI as users run it (the installed console script, a separate process)
against the chart installed on the session cluster: a real bridge and operator in pods."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.launcher import Cluster
from tests.deploy.installed import Installed, installed
from tests.servers.storage import StorageServer

DATATX = str(Path(sys.executable).parent / "datatx")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@dataclass
class Cli:
    """Runs `datatx` in an empty home and work dir (no config file, no .cluster/)."""

    setup: Installed
    home: Path

    def env(self, user: str | None = "alice", **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "DATATX_ADDRESS": self.setup.release.grpc_address,
        }
        if user is not None:
            env["DATATX_TOKEN_FILE"] = str(self.setup.token_file(user))
        return {**env, **extra}

    def __call__(
        self,
        *args: str,
        user: str | None = "alice",
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 240,
    ) -> Result:
        done = subprocess.run(
            [DATATX, *args],
            env=env if env is not None else self.env(user),
            cwd=cwd or self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def remotes_file(self, source: StorageServer, destination: StorageServer) -> Path:
        """The CLI's remotes file: the source with its secrets, the destination without."""
        remotes = {
            "src": {
                "type": source.kind,
                "options": source.options,
                "secret_options": source.secret_options,
            },
            "dst": {"type": destination.kind, "options": destination.options},
        }
        return self.private("remotes.yaml", yaml.safe_dump(remotes))

    def private(self, name: str, text: str) -> Path:
        path = self.home / name
        path.touch(mode=0o600)
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def installed_datatx(
    cluster: Cluster, datatx_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    with installed(cluster, tmp_path_factory.mktemp("release")) as setup:
        yield setup


@pytest.fixture
def cli(installed_datatx: Installed, tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(installed_datatx, home)
