"""The checked-in stubs of proto/ are what `make proto` generates from the .proto now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROTO = Path(__file__).resolve().parents[2] / "proto"
STUBS = sorted((PROTO / "datatx" / "v1").glob("*_pb2*.py*"))


def test_stubs_are_checked_in() -> None:
    assert {path.name for path in STUBS} == {
        "datatx_pb2.py",
        "datatx_pb2.pyi",
        "datatx_pb2_grpc.py",
        "datatx_pb2_grpc.pyi",
    }


@pytest.mark.parametrize("stub", STUBS, ids=lambda path: path.name)
def test_stub_is_current(stub: Path, tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(PROTO / "generate.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = tmp_path / "datatx" / "v1" / stub.name
    assert fresh.read_text() == stub.read_text(), f"{stub.name} is stale: run `make proto`"
