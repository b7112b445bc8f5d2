"""`localcluster up` starts a second cluster next to the session's; `down` leaves nothing,
not even a pod that was still running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from localcluster.launcher import Cluster
from localcluster.processes import ProcessRecord, alive
from tests.cluster.helpers import (
    assert_running,
    assert_stopped,
    get,
    pod,
    python_container,
    wait_until,
)

LOCALCLUSTER = [str(Path(sys.executable).parent / "localcluster")]


def _cli(*args: str) -> str:
    result = subprocess.run(
        [*LOCALCLUSTER, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _sleeper_record(second: Cluster) -> ProcessRecord | None:
    """The node agent's record of the sleeper's process, once the pod runs."""
    found = get(second, "default", "pod", "sleeper")
    if not found or found["status"].get("phase") != "Running":
        return None
    path = second.layout.nodeagent / "processes" / f"{found['metadata']['uid']}-sleep.json"
    return ProcessRecord.from_json(path.read_text()) if path.exists() else None


def test_second_cluster_runs_alongside_and_stops_cleanly(cluster: Cluster, tmp_path: Path) -> None:
    workdir = tmp_path / "second"
    _cli("up", "--dir", str(workdir))
    state = json.loads((workdir / "state.json").read_text())
    records = assert_running(workdir)
    try:
        second = Cluster.attach(workdir)
        assert second.server != cluster.server
        assert set(state["ports"].values()).isdisjoint(
            cluster.ports.as_dict().values() if cluster.ports else ()
        )
        node = json.loads(second.kubectl("get", "node", "localcluster", "-o", "json").stdout)
        assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"

        manifest = pod("hello", [python_container("hello", "print('from the second')")])
        manifest["spec"]["restartPolicy"] = "Never"
        second.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        second.kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/hello")
        assert second.kubectl("logs", "hello").stdout == "from the second\n"
        assert cluster.kubectl("get", "pod", "hello", check=False).returncode != 0, (
            "the clusters do not share objects"
        )

        # Left running on purpose: `down` has to end it along with the cluster.
        sleep_container = {"name": "sleep", "image": "busybox", "command": ["sleep", "3600"]}
        sleeper = pod("sleeper", [sleep_container])
        second.kubectl("apply", "-f", "-", input=json.dumps(sleeper))
        sleep = wait_until(lambda: _sleeper_record(second), what="the sleeper to run")
        assert alive(sleep)
        assert Path(f"/proc/{sleep.pid}/cmdline").read_bytes().split(b"\0")[:2] == [
            b"sleep",
            b"3600",
        ]
        records.append(sleep)
        assert "running" in _cli("status", "--dir", str(workdir))
    finally:
        _cli("down", "--dir", str(workdir))

    assert_stopped(workdir, records)
    assert cluster.kubectl("get", "--raw", "/readyz").stdout == "ok"
