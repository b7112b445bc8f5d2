"""The chart installed on the session cluster, exactly as `make dev-up` installs it
(`devstack.release`), in a fresh namespace that enforces the restricted Pod Security
Standard, with static-token users for clients."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from datatx.v1 import datatx_pb2_grpc as pb_grpc
from devstack import kube
from devstack.release import ADMIN_GROUP, Release, User, new_token
from localcluster.launcher import Cluster

USERS = {"alice": (), "bob": (), "admin": (ADMIN_GROUP,)}


@dataclass
class Installed:
    cluster: Cluster
    release: Release
    tokens: dict[str, str]  # user -> static token
    directory: Path
    install_seconds: float

    @property
    def namespace(self) -> str:
        return self.release.namespace

    def kubectl(self, *args: str, check: bool = True) -> Any:
        return self.cluster.kubectl(*args, "-n", self.namespace, check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def pods(self, component: str) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/component={component}"
        return list(self.get("pods", "-l", selector)["items"])

    def auth(self, user: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[user]}"),)

    def seed(self) -> pb_grpc.DataTxStub:
        return pb_grpc.DataTxStub(grpc.insecure_channel(self.release.grpc_address))

    def token_file(self, user: str) -> Path:
        path = self.directory / f"{user}.token"
        path.touch(mode=0o600)
        path.write_text(self.tokens[user])
        return path

    def install(self, overrides: dict[str, Any] | None = None) -> float:
        """Install or upgrade with these values on top of the local ones."""
        return self.release.install(self.directory / "values.yaml", overrides)


@contextlib.contextmanager
def installed(
    cluster: Cluster, directory: Path, overrides: dict[str, Any] | None = None
) -> Iterator[Installed]:
    namespace = f"helm-{uuid.uuid4().hex[:8]}"
    kube.ensure_namespace(cluster, namespace, restricted=True)
    release = Release(cluster, namespace)
    tokens = {user: new_token() for user in USERS}
    release.put_tokens({tokens[user]: User(user, groups) for user, groups in USERS.items()})
    setup = Installed(cluster, release, tokens, directory, 0.0)
    try:
        setup.install_seconds = setup.install(overrides)
        yield setup
    finally:
        if release.installed():
            release.uninstall()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
