"""The checked-in stubs of proto/ are what `make proto` generates from the .proto now, and
the wire numbers of the seed API's statuses stay as the seed defined them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from datatx.v1 import datatx_pb2 as pb

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


def test_status_enum_keeps_the_seed_numbers() -> None:
    """Clients of the seed API know its four statuses by number: they must never move;
    the new ones only follow them."""
    assert [(value.name, value.number) for value in pb.Status.DESCRIPTOR.values] == [
        ("STATUS_UNSPECIFIED", 0),
        ("PENDING", 1),
        ("IN_PROGRESS", 2),
        ("FINISHED", 3),
        ("INVITE_NOT_ACCEPTED_ON_TIME", 4),
        ("WAITING_FOR_INVITE_ACCEPTANCE", 5),
        ("INVITE_DECLINED", 6),
        ("FAILED", 7),
        ("CANCELLED", 8),
    ]
