"""Small helpers for tests that drive the local cluster through kubectl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from localcluster.launcher import Cluster

Manifest = dict[str, Any]
T = TypeVar("T")


def apply(cluster: Cluster, namespace: str, *manifests: Manifest) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(manifests))


def get(cluster: Cluster, namespace: str, kind: str, name: str) -> Manifest | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: Manifest = json.loads(result.stdout)
    return found


def pods_of_job(cluster: Cluster, namespace: str, job: str) -> list[Manifest]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"job-name={job}", "-o", "json")
    items: list[Manifest] = json.loads(out.stdout)["items"]
    return items


def wait_until(check: Callable[[], T | None], timeout: float = 60, what: str = "") -> T:
    """Poll until `check` returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.3)


def python_container(name: str, script: str, **extra: Any) -> Manifest:
    """A container running `script` with the venv's interpreter (image python:3.11)."""
    return {
        "name": name,
        "image": "python:3.11",
        "command": ["python3", "-u", "-c", script],
        **extra,
    }


def pod(name: str, containers: list[Manifest], **spec: Any) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": containers, **spec},
    }


def container_state(pod_object: Manifest) -> Manifest:
    statuses = pod_object.get("status", {}).get("containerStatuses") or [{}]
    state: Manifest = statuses[0].get("state", {})
    return state
