"""Bridge benchmarks on the local cluster, run by `make bench`.

1. DoTransfer creates, against a raw Kubernetes API create of the same objects (the
   `kubernetes` client, the bridge's ServiceAccount), alternating one call of each so both
   see the same load: latency percentiles and the ratio of the p50s (goal: bridge <= 1.3 x
   raw), then creates per second with concurrent clients. Two shapes: an invite transfer
   without secret options (the CR only), and a transfer with a credential and a secret
   remote option (the CR and its two Secrets).
2. GetStatus with 10,000 transfers present: p50 and p99 (goal: p99 <= 5 ms), and the
   number of GETs the bridge sent to the API server meanwhile (reads come from its cache).
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from kubernetes import client, config

from datatx.v1 import datatx_pb2 as pb
from datatx.v1 import datatx_pb2_grpc as pb_grpc
from datatx_operator import api
from grpc_bridge.auth import Principal
from grpc_bridge.drafts import build_draft
from grpc_bridge.seed_api import request_data
from tests.bridge.conftest import Bridge, Launcher, invite_request, start_bridge, webdav_request
from tests.servers.datatx import Namespace

__all__ = ["start_bridge"]  # the fixture, used by the benchmarks below

ROUNDS = 300
CONCURRENCY = 8
THROUGHPUT_SECONDS = 10
TRANSFERS_PRESENT = 10_000
STATUS_CALLS = 5_000


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.50) * 1000, "p90": pick(0.90) * 1000, "p99": pick(0.99) * 1000}


def _show(label: str, samples: list[float]) -> dict[str, float]:
    stats = _percentiles(samples)
    print(
        f"  {label:34} n={len(samples):5}  p50 {stats['p50']:7.2f} ms  "
        f"p90 {stats['p90']:7.2f} ms  p99 {stats['p99']:7.2f} ms"
    )
    return stats


class Raw:
    """What the bridge writes, written directly (the yardstick)."""

    def __init__(self, namespace: Namespace, kubeconfig: str) -> None:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = 32
        api_client = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace.name
        self.secret_writers = ThreadPoolExecutor(2)
        principal = Principal(user="alice", groups=("physics",))
        self.drafts = {
            with_secrets: build_draft(request_data(_request(with_secrets=with_secrets)), principal)
            for with_secrets in (False, True)
        }

    def create(self, *, with_secrets: bool) -> None:
        """The CR, then its two Secrets at once, as the bridge writes them."""
        name = f"dt-{secrets.token_hex(6)}"
        draft = self.drafts[with_secrets]
        body = {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": name, "labels": {api.LABEL_MANAGED_BY: api.MANAGED_BY}},
            "spec": draft.spec_for(name),
        }
        created: Any = self.custom.create_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, api.PLURAL, body
        )
        if not with_secrets:
            return
        owner = {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": name,
                 "uid": created["metadata"]["uid"], "controller": True}  # fmt: skip
        writes = [
            (api.remotes_secret_name(name), draft.remote_secrets),
            (api.credential_secret_name(name), {"credential": draft.credential or ""}),
        ]

        def write(secret: str, data: dict[str, str]) -> None:
            body = {
                "metadata": {"name": secret, "ownerReferences": [owner]},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
            self.core.create_namespaced_secret(self.namespace, body, _preload_content=False)

        list(self.secret_writers.map(lambda args: write(*args), writes))


def _request(*, with_secrets: bool) -> pb.DoTransferRequest:
    """CR only: an invite transfer without secret options; else a credential and a
    secret remote option (the CR and two Secrets)."""
    if with_secrets:
        return webdav_request()
    request = invite_request()
    for remote in request.remotes:
        remote.ClearField("secret_options")
    return request


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _throughput(call: Callable[[], Any]) -> float:
    """Calls per second with CONCURRENCY callers for THROUGHPUT_SECONDS."""
    deadline = time.monotonic() + THROUGHPUT_SECONDS

    def worker() -> int:
        done = 0
        while time.monotonic() < deadline:
            call()
            done += 1
        return done

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        total = sum(pool.map(lambda _: worker(), range(CONCURRENCY)))
    return total / THROUGHPUT_SECONDS


def _kube_gets(bridge: Bridge) -> float:
    pattern = r'datatx_bridge_kube_requests_total{outcome="[^"]*",request="get transfer"} (\S+)'
    return sum(float(value) for value in re.findall(pattern, bridge.metrics()))


def _compare(
    stub: pb_grpc.DataTxStub,
    metadata: list[tuple[str, str]],
    raw: Raw,
    shape: str,
    *,
    with_secrets: bool,
) -> float:
    """Alternate one DoTransfer and one raw create; print both; return the p50 ratio."""
    bridge_samples, raw_samples = [], []
    for index in range(ROUNDS + 20):
        call = functools.partial(
            stub.DoTransfer, _request(with_secrets=with_secrets), metadata=metadata, timeout=10
        )
        bridge_time = _timed(call)
        raw_time = _timed(lambda: raw.create(with_secrets=with_secrets))
        if index >= 20:  # warm-up excluded
            bridge_samples.append(bridge_time)
            raw_samples.append(raw_time)
    bridge_stats = _show(f"bridge DoTransfer, {shape}", bridge_samples)
    raw_stats = _show(f"raw create, {shape}", raw_samples)
    ratio = bridge_stats["p50"] / raw_stats["p50"]
    print(f"  p50 ratio bridge/raw, {shape}: {ratio:.2f} (goal <= 1.30)")
    pool = [_request(with_secrets=with_secrets) for _ in range(64)]
    bridge_rate = _throughput(
        lambda: stub.DoTransfer(pool[secrets.randbelow(len(pool))], metadata=metadata, timeout=10)
    )
    raw_rate = _throughput(lambda: raw.create(with_secrets=with_secrets))
    print(
        f"  creates/s with {CONCURRENCY} clients, {shape}: bridge {bridge_rate:.0f}/s, "
        f"raw {raw_rate:.0f}/s ({bridge_rate / raw_rate:.2f} of raw)"
    )
    return ratio


def test_bench_do_transfer(datatx_namespace: Namespace, start_bridge: Launcher) -> None:
    bridge = start_bridge(datatx_namespace, log_level="WARNING")
    raw = Raw(datatx_namespace, bridge.env["DATATX_BRIDGE_KUBECONFIG"])
    stub = pb_grpc.DataTxStub(grpc.insecure_channel(bridge.addresses["grpc"]))
    alice = bridge.auth("alice")
    print(f"\nDoTransfer vs raw create, {ROUNDS} alternating rounds per shape")
    _compare(stub, alice, raw, "CR only", with_secrets=False)
    _compare(stub, alice, raw, "CR + 2 Secrets", with_secrets=True)
    print(f"  CRs created: {len(bridge.transfers())}")


def _cached(bridge: Bridge) -> float:
    found = re.search(r"^datatx_bridge_cached_transfers (\S+)$", bridge.metrics(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_bench_get_status(datatx_namespace: Namespace, start_bridge: Launcher) -> None:
    bridge = start_bridge(datatx_namespace, log_level="WARNING")
    stub = pb_grpc.DataTxStub(grpc.insecure_channel(bridge.addresses["grpc"]))
    alice = bridge.auth("alice")
    print(f"\nGetStatus with {TRANSFERS_PRESENT} transfers present")
    started = time.monotonic()
    requests = [_request(with_secrets=False) for _ in range(64)]
    with ThreadPoolExecutor(16) as pool:
        names = list(
            pool.map(
                lambda i: stub.DoTransfer(requests[i % 64], metadata=alice, timeout=30).transfer_id,
                range(TRANSFERS_PRESENT),
            )
        )
    print(
        f"  created {len(names)} transfers through the bridge in {time.monotonic() - started:.0f} s"
    )
    assert _cached(bridge) >= TRANSFERS_PRESENT
    gets_before = _kube_gets(bridge)
    samples = []
    for index in range(STATUS_CALLS):
        request = pb.GetStatusRequest(transfer_id=names[secrets.randbelow(len(names))])
        elapsed = _timed(functools.partial(stub.GetStatus, request, metadata=alice, timeout=10))
        if index >= 100:
            samples.append(elapsed)
    stats = _show("GetStatus", samples)
    print(
        f"  p99 {stats['p99']:.2f} ms (goal <= 5 ms); mean {statistics.mean(samples) * 1000:.2f} ms"
    )
    print(f"  GETs to the API server during the run: {_kube_gets(bridge) - gets_before:.0f}")
    rate = _throughput(
        lambda: stub.GetStatus(
            pb.GetStatusRequest(transfer_id=names[secrets.randbelow(len(names))]), metadata=alice
        )
    )
    print(f"  GetStatus/s with {CONCURRENCY} clients: {rate:.0f}")
