"""Operator catch-up after a restart, against the raw API doing the least a catch-up takes.

N transfers wait with no status (as after an operator that died before it saw them). The
operator's time runs from its process start until every transfer has a status (one starts
under a cap of one, the rest are Queued). The yardstick is a plain client making the same
number of reads and writes: one GET and one status patch per transfer, from 16 threads.
Rounds alternate; statuses are removed between rounds (untimed). Prints medians, the ratio
and counts, and writes them to bench/results/restart.json.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client

from datatx_operator import api
from tests.operator.observe import watch_transfers
from tests.operator.submit import submit
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.storage import StorageServer

RESULTS = Path(__file__).parent / "results"
TRANSFERS = int(os.environ.get("BENCH_RESTART_TRANSFERS", "300"))
ROUNDS = int(os.environ.get("BENCH_RESTART_ROUNDS", "3"))
THREADS = 16


def _patch_status(
    custom: client.CustomObjectsApi, namespace: Namespace, name: str, body: dict[str, Any]
) -> None:
    custom.patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, namespace.name, api.PLURAL, name, body
    )


def _each(names: list[str], call: Callable[[str], None]) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(call, names))


def _wait_until_all_have_a_status(
    custom: client.CustomObjectsApi, namespace: Namespace, count: int
) -> None:
    listed: Any = custom.list_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace.name, api.PLURAL
    )
    done = {t["metadata"]["name"] for t in listed["items"] if t.get("status")}
    if len(done) == count:
        return
    for transfer in watch_transfers(
        namespace, 600, resource_version=listed["metadata"]["resourceVersion"]
    ):
        if transfer.get("status"):
            done.add(transfer["metadata"]["name"])
        if len(done) == count:
            return
    raise AssertionError(f"only {len(done)} of {count} transfers got a status")


def _raw_catch_up(custom: client.CustomObjectsApi, namespace: Namespace, names: list[str]) -> float:
    status = {"status": {"phase": "Pending", "reason": "Queued", "message": "queued"}}

    def one(name: str) -> None:
        custom.get_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace.name, api.PLURAL, name
        )
        _patch_status(custom, namespace, name, status)

    began = time.monotonic()
    _each(names, one)
    return time.monotonic() - began


def test_catch_up_after_a_restart(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    webdav_server.write("tiny/one.bin", b"x" * 1024)
    names = [
        submit(datatx_namespace, webdav_server, "/tiny", s3_server, f"/bucket/t{index}")
        for index in range(TRANSFERS)
    ]
    custom = client.CustomObjectsApi(datatx_namespace.api)
    caps = {"DATATX_MAX_RUNNING_TOTAL": "1", "DATATX_MAX_RUNNING_PER_NAMESPACE": "1"}
    operator_times, raw_times = [], []
    for index in range(ROUNDS):
        runs = ["raw", "operator"] if index % 2 == 0 else ["operator", "raw"]
        for kind in runs:
            if kind == "raw":
                raw_times.append(_raw_catch_up(custom, datatx_namespace, names))
            else:
                began = time.monotonic()
                operator = run_operator(datatx_namespace, **caps)
                _wait_until_all_have_a_status(custom, datatx_namespace, TRANSFERS)
                operator_times.append(time.monotonic() - began)
                operator.stop()
            # Untimed: back to no status at all, after the one admitted run has ended.
            datatx_namespace.wait_jobs_complete(check=False)  # no Jobs yet after a raw round
            _each(
                names,
                lambda name: _patch_status(custom, datatx_namespace, name, {"status": None}),
            )

    outcome = {
        "transfers": TRANSFERS,
        "rounds": ROUNDS,
        "operator_seconds": [round(t, 2) for t in operator_times],
        "raw_get_and_patch_seconds": [round(t, 2) for t in raw_times],
        "operator_median": round(statistics.median(operator_times), 2),
        "raw_median": round(statistics.median(raw_times), 2),
        "ratio": round(statistics.median(operator_times) / statistics.median(raw_times), 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "restart.json").write_text(json.dumps(outcome, indent=2))
    print("\n" + json.dumps(outcome, indent=2))
