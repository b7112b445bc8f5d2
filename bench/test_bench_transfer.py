"""Transfer benchmark: plain `rclone copy` against a DataTransfer through the operator.

Same data, same two endpoints (`rclone serve webdav` -> `rclone serve s3`), same rclone
config (written by the driver's own config code), in one run, alternating. The operator's
time runs from the CR's creation to the phase Finished; rclone's is the process' wall time.
Prints medians, ratios and counts, and writes them to bench/results/transfer.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datatx_operator import api
from datatx_operator.drivers.rclone_cli import Rclone, find_rclone
from datatx_operator.drivers.rclone_config import write_config
from datatx_operator.drivers.redact import Redactor
from tests.operator.observe import watch_transfers
from tests.operator.submit import remote, submit
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.storage import StorageServer

RESULTS = Path(__file__).parent / "results"
ROUNDS_BIG = int(os.environ.get("BENCH_ROUNDS_BIG", "4"))
ROUNDS_SMALL = int(os.environ.get("BENCH_ROUNDS_SMALL", "2"))
ROUNDS_LATENCY = int(os.environ.get("BENCH_ROUNDS_LATENCY", "7"))
SMALL_FILES = 2000
results: dict[str, object] = {}


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "transfer.json").write_text(json.dumps(results, indent=2))
    print("\n" + json.dumps(results, indent=2))


def plain_rclone(
    workdir: Path, source: StorageServer, destination: StorageServer
) -> Callable[[str, str], float]:
    """A `rclone copy` with the very config the mover would write; returns its timer."""
    specs = [
        remote("src", source, with_secrets=True),
        remote("dst", destination, with_secrets=False),
    ]
    secrets = {api.remote_secret_key("src", k): v for k, v in source.secret_options.items()}
    secrets[api.SECRET_KEY_CREDENTIAL] = destination.credential
    workdir.mkdir(parents=True, exist_ok=True)
    config = asyncio.run(write_config(Rclone(workdir), specs, secrets, "dst", Redactor()))

    def copy(source_path: str, destination_path: str) -> float:
        begin = time.monotonic()
        subprocess.run(
            [
                find_rclone(),
                "copy",
                f"src:{source_path}",
                f"dst:{destination_path}",
                f"--config={config}",
                "--transfers=4",
                "--retries=1",
            ],
            check=True,
            capture_output=True,
        )
        return time.monotonic() - begin

    return copy


def through_operator(
    namespace: Namespace, source: StorageServer, destination: StorageServer
) -> Callable[[str, str], float]:
    """Create a DataTransfer and time it until the watch shows Finished."""

    def copy(source_path: str, destination_path: str) -> float:
        begin = time.monotonic()
        name = submit(namespace, source, source_path, destination, destination_path)
        for transfer in watch_transfers(namespace, 1800, field_selector=f"metadata.name={name}"):
            phase = (transfer.get("status") or {}).get("phase")
            if phase in ("Finished", "Failed"):
                assert phase == "Finished", transfer["status"]
                return time.monotonic() - begin
        raise AssertionError(f"{name} did not finish")

    return copy


def alternate(
    rounds: int,
    plain: Callable[[str, str], float],
    operator: Callable[[str, str], float],
    source: str,
    label: str,
) -> dict[str, object]:
    plain_times: list[float] = []
    operator_times: list[float] = []
    for index in range(rounds):
        # Each copy writes its data anew: flush the last one's dirty pages first, so that
        # neither side pays for the other's writeback, and swap who goes first each round.
        runs = [(plain, plain_times, "plain"), (operator, operator_times, "dt")]
        for copy, times, kind in runs if index % 2 == 0 else runs[::-1]:
            os.sync()
            times.append(copy(source, f"/bucket/{label}-{kind}-{index}"))
    plain_median, operator_median = (
        statistics.median(plain_times),
        statistics.median(operator_times),
    )
    return {
        "rounds": rounds,
        "plain_rclone_seconds": [round(t, 2) for t in plain_times],
        "datatransfer_seconds": [round(t, 2) for t in operator_times],
        "plain_median": round(plain_median, 2),
        "datatransfer_median": round(operator_median, 2),
        "ratio": round(operator_median / plain_median, 3),
    }


@pytest.fixture
def setup(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
    tmp_path: Path,
) -> tuple[Callable[[str, str], float], Callable[[str, str], float], StorageServer]:
    run_operator(datatx_namespace)
    return (
        plain_rclone(tmp_path / "plain", webdav_server, s3_server),
        through_operator(datatx_namespace, webdav_server, s3_server),
        webdav_server,
    )


def test_one_gib_file(
    setup: tuple[Callable[[str, str], float], Callable[[str, str], float], StorageServer],
) -> None:
    plain, operator, source = setup
    target = source.path("big/1GiB.bin")
    target.parent.mkdir(parents=True)
    with target.open("wb") as out:
        for _ in range(64):
            out.write(os.urandom(16 * 1024 * 1024))
    results["one_gib_file"] = alternate(ROUNDS_BIG, plain, operator, "/big", "big")


def test_two_thousand_small_files(
    setup: tuple[Callable[[str, str], float], Callable[[str, str], float], StorageServer],
) -> None:
    plain, operator, source = setup
    for index in range(SMALL_FILES):
        source.write(f"small/d{index % 20}/f{index}.txt", os.urandom(1024 + index % 4096))
    outcome = alternate(ROUNDS_SMALL, plain, operator, "/small", "small")
    outcome["files"] = SMALL_FILES
    results["two_thousand_small_files"] = outcome


def test_latency_of_a_1kib_transfer(
    setup: tuple[Callable[[str, str], float], Callable[[str, str], float], StorageServer],
) -> None:
    _, operator, source = setup
    source.write("tiny/one.bin", os.urandom(1024))
    times = sorted(operator("/tiny", f"/bucket/tiny-{index}") for index in range(ROUNDS_LATENCY))
    results["latency_1kib"] = {
        "rounds": ROUNDS_LATENCY,
        "seconds": [round(t, 2) for t in times],
        "median": round(statistics.median(times), 2),
        "max": round(times[-1], 2),
    }
