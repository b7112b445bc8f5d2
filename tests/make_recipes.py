"""The Makefile's own recipes, run with the cluster dir pointed at a test's own dir.

Tests read a recipe from `make -n` instead of restating it, so they run what `make` runs and
break when the Makefile changes in a way a newcomer would notice.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLUSTER_DIR_ARG = "--dir .cluster"


def recipe(target: str, workdir: Path) -> list[str]:
    """The last command of `target`'s recipe, with `--dir .cluster` replaced by `workdir`
    (earlier lines are prerequisites such as system-deps and the tool build)."""
    printed = subprocess.run(
        ["make", "-s", "-n", target], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    last = printed.strip().splitlines()[-1]
    assert CLUSTER_DIR_ARG in last, last
    return shlex.split(last.replace(CLUSTER_DIR_ARG, f"--dir {workdir}"))


def run_recipe(target: str, workdir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `target`'s recipe (see `recipe`) from the repo root; the caller checks the result."""
    return subprocess.run(
        recipe(target, workdir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
