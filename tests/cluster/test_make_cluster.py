"""`make cluster-up` and `make cluster-down`, run as the Makefile's recipes run them (only the
cluster dir differs): up leaves a working admin kubeconfig, down leaves no process."""

from __future__ import annotations

import subprocess
from pathlib import Path

from localcluster import tools
from localcluster.processes import ProcessRecord
from tests.cluster.helpers import assert_running, assert_stopped
from tests.make_recipes import run_recipe


def test_make_cluster_up_gives_a_working_kubeconfig_and_down_stops_everything(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "cluster"
    records: list[ProcessRecord] = []
    try:
        up = run_recipe("cluster-up", workdir, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        records = assert_running(workdir)
        kubeconfig = workdir / "kubeconfig"
        assert kubeconfig.is_file()
        nodes = subprocess.run(
            [str(tools.tool_path("kubectl")), f"--kubeconfig={kubeconfig}", "get", "nodes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.splitlines()
        assert nodes[0].split()[:2] == ["NAME", "STATUS"], nodes
        assert [row.split()[:2] for row in nodes[1:]] == [["localcluster", "Ready"]]
    finally:
        down = run_recipe("cluster-down", workdir, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "no process left" in down.stdout
    assert_stopped(workdir, records)
