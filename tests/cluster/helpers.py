"""Small helpers for tests that drive the local cluster through kubectl."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from localcluster.launcher import Cluster
from localcluster.processes import ProcessRecord, alive

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


def first_line(path: Path) -> str | None:
    """The first line a pod wrote to a host file (often its pid), once it has written one."""
    lines = path.read_text().splitlines() if path.exists() else []
    return lines[0] if lines else None


def pid_gone(pid: int) -> bool:
    """Whether a pod's process has ended (pods share the host's pid namespace)."""
    return not Path(f"/proc/{pid}").exists()


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text`: every component of a cluster names
    its work dir in its arguments, so this finds what a stopped cluster left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def assert_running(workdir: Path) -> list[ProcessRecord]:
    """The processes the cluster in `workdir` recorded (its components in state.json, the
    pods' processes in the node agent's records), each checked to be alive and found by the
    /proc scan, so that `assert_stopped` finding none later means something."""
    state = json.loads((workdir / "state.json").read_text())
    components = [ProcessRecord(**record) for record in state["processes"]]
    assert [record.name for record in components if not alive(record)] == []
    scanned = set(processes_mentioning(str(workdir)))
    assert [record.name for record in components if record.pid not in scanned] == []
    pod_records = sorted((workdir / "nodeagent" / "processes").glob("*.json"))
    return components + [ProcessRecord.from_json(path.read_text()) for path in pod_records]


def assert_stopped(workdir: Path, records: list[ProcessRecord]) -> None:
    """Nothing of the cluster in `workdir` runs any more, recorded or not."""
    assert [record for record in records if alive(record)] == []
    assert processes_mentioning(str(workdir)) == [], "a process still names the cluster's dir"
    assert not (workdir / "state.json").exists()
