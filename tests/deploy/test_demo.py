"""`make demo`, run exactly as the README tells a newcomer to run it, on a cluster of its own:
it must end with every file at the destination and a Finished transfer in the listing."""

from __future__ import annotations

import re
from pathlib import Path

from tests.make_recipes import run_recipe


def test_make_demo_moves_real_bytes_and_lists_the_finished_transfer(tmp_path: Path) -> None:
    workdir = tmp_path / "cluster"
    try:
        demo = run_recipe("demo", workdir, timeout=600)
        output = demo.stdout + demo.stderr
        assert demo.returncode == 0, output[-4000:]
        assert re.search(r"all 4 files arrived intact \(sha256 compared\)", output), output
        listing = output.split("$ kubectl get datatransfers", 1)[1]
        header, row = listing.splitlines()[1:3]
        assert header.split()[:4] == ["NAME", "PHASE", "DRIVER", "PROGRESS"], listing
        assert row.split()[1:4] == ["Finished", "rclone", "100"], listing
        assert (workdir / "bridge-address").read_text().strip().startswith("127.0.0.1:")
    finally:
        down = run_recipe("dev-down", workdir, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "stopped" in down.stdout
    assert not (workdir / "bridge-token").exists()
