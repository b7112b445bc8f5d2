"""The checked-in stubs of proto/ are what `make proto` generates from the .proto now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROTO = Path(__file__).resolve().parents[2] / "proto"
STUBS = ("datatx_pb2.py", "datatx_pb2.pyi", "datatx_pb2_grpc.py", "datatx_pb2_grpc.pyi")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stubs")
    subprocess.run(
        [sys.executable, str(PROTO / "generate.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out / "datatx" / "v1"


@pytest.mark.parametrize("stub", STUBS)
def test_stub_is_current(stub: str, fresh: Path) -> None:
    checked_in = PROTO / "datatx" / "v1" / stub
    assert checked_in.is_file(), f"{stub} is missing: run `make proto`"
    assert (fresh / stub).read_text() == checked_in.read_text(), (
        f"{stub} is stale: run `make proto`"
    )
