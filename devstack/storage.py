"""Demo storage endpoints: `rclone serve webdav` pods on the local cluster, each serving a
host directory (so the demo can put files in and compare what arrived) on a free port of
127.0.0.1, with a fresh user and password that reach the pod only through a Secret.

They run in a namespace of their own: a hostPath volume is not allowed where the
restricted Pod Security Standard is enforced, as it is in datatx's namespace.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import kube
from devstack.release import free_ports
from localcluster.launcher import Cluster

RCLONE_IMAGE = "rclone/rclone:1.75.2"
LABEL = "datatx.io/demo-storage"


@dataclass(frozen=True)
class Endpoint:
    """One running WebDAV server: its root on the host and how rclone reaches it."""

    name: str
    root: Path
    port: int
    user: str
    password: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def remote(self, *, with_password: bool) -> dict[str, Any]:
        """The endpoint as an entry of the CLI's remotes file."""
        entry: dict[str, Any] = {
            "type": "webdav",
            "options": {"url": self.url, "vendor": "other", "user": self.user},
        }
        if with_password:
            entry["secret_options"] = {"pass": self.password}
        return entry

    @property
    def credential(self) -> str:
        """The destination credential in datatx's form for WebDAV."""
        return f"{self.user}:{self.password}"


def _pod(namespace: str, endpoint: Endpoint) -> dict[str, Any]:
    def from_secret(key: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": endpoint.name, "key": key}}

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": endpoint.name, "namespace": namespace, "labels": {LABEL: "true"}},
        "spec": {
            "containers": [
                {
                    "name": "webdav",
                    "image": RCLONE_IMAGE,
                    "args": [
                        "serve",
                        "webdav",
                        "/data",
                        f"--addr=127.0.0.1:{endpoint.port}",
                        "--config=/tmp/rclone.conf",
                        "--cache-dir=/tmp/cache",
                    ],
                    "env": [
                        {"name": "RCLONE_USER", "valueFrom": from_secret("user")},
                        {"name": "RCLONE_PASS", "valueFrom": from_secret("password")},
                    ],
                    "readinessProbe": {"tcpSocket": {"port": endpoint.port}, "periodSeconds": 1},
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a pod's path)
                    ],
                }
            ],
            "volumes": [
                {"name": "data", "hostPath": {"path": str(endpoint.root), "type": "Directory"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }


def start(cluster: Cluster, namespace: str, directory: Path, names: list[str]) -> list[Endpoint]:
    """Fresh endpoints (earlier ones in the namespace are replaced), each with an empty root
    under `directory`; return once all of them accept connections."""
    kube.ensure_namespace(cluster, namespace, restricted=False)
    cluster.kubectl("delete", "pods", "-n", namespace, "-l", LABEL, "--wait=true")
    endpoints = []
    for name, port in zip(names, free_ports(len(names)), strict=True):
        root = directory / name
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        endpoint = Endpoint(
            name=name,
            root=root,
            port=port,
            user=f"{name}-{secrets.token_hex(3)}",
            password=secrets.token_urlsafe(18),
        )
        secret = kube.secret(
            namespace, name, {"user": endpoint.user, "password": endpoint.password}
        )
        kube.apply(cluster, secret, _pod(namespace, endpoint))
        endpoints.append(endpoint)
    cluster.kubectl(
        "wait", "--for=condition=Ready", "pods", "-n", namespace, "-l", LABEL, "--timeout=120s"
    )
    return endpoints
