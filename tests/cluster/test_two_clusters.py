"""`localcluster up` starts a second cluster next to the session's; `down` leaves nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from localcluster.launcher import Cluster
from localcluster.processes import ProcessRecord, alive
from tests.cluster.helpers import pod, python_container

LOCALCLUSTER = [str(Path(sys.executable).parent / "localcluster")]


def _cli(*args: str) -> str:
    result = subprocess.run(
        [*LOCALCLUSTER, *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_second_cluster_runs_alongside_and_stops_cleanly(cluster: Cluster, tmp_path: Path) -> None:
    workdir = tmp_path / "second"
    _cli("up", "--dir", str(workdir))
    state = json.loads((workdir / "state.json").read_text())
    records = [ProcessRecord(**record) for record in state["processes"]]
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
        assert "running" in _cli("status", "--dir", str(workdir))
    finally:
        _cli("down", "--dir", str(workdir))

    assert not any(alive(record) for record in records)
    assert not (workdir / "state.json").exists()
    assert cluster.kubectl("get", "--raw", "/readyz").stdout == "ok"
