"""The bridge as a server: reflection for generic clients (grpcurl), health checking,
metrics, JSON logs, graceful shutdown, TLS and mTLS, and several replicas side by side."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cs3.rpc.v1beta1 import code_pb2
from cs3.tx.v1beta1 import resources_pb2 as cs3_tx
from cs3.tx.v1beta1 import tx_api_pb2 as tx
from grpc_health.v1 import health_pb2

from datatx.v1 import datatx_pb2 as pb
from datatx.v1 import datatx_pb2_grpc as pb_grpc
from localcluster.pki import _Authority
from localcluster.tools import tool_path
from tests.bridge.conftest import Bridge, Launcher, eventually, webdav_request
from tests.servers.datatx import Namespace


def _grpcurl(
    bridge: Bridge, *args: str, body: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool_path("grpcurl")), "-plaintext", *args],
        input=body,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_grpcurl_works_through_reflection(shared_bridge: Bridge) -> None:
    address = shared_bridge.addresses["grpc"]
    listed = _grpcurl(shared_bridge, address, "list")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= {
        "datatx.v1.DataTx",
        "cs3.tx.v1beta1.TxAPI",
        "grpc.health.v1.Health",
    }
    described = _grpcurl(shared_bridge, address, "describe", "datatx.v1.DataTx")
    assert "rpc DoTransfer ( .datatx.v1.DoTransferRequest )" in described.stdout
    assert "stream .datatx.v1.Transfer" in described.stdout

    header = f"authorization: Bearer {shared_bridge.tokens['alice']}"
    request = {
        "src": "src:data",
        "dest": "dst:in",
        "remotes": [
            {"name": "src", "type": "local"},
            {"name": "dst", "type": "webdav", "options": {"url": "https://d.example.org"}},
        ],
        "credential": "grpcurl-credential-Vb5",
        "options": {"transfers": 2, "checksum": False},
    }
    created = _grpcurl(
        shared_bridge,
        "-H",
        header,
        "-d",
        json.dumps(request),
        address,
        "datatx.v1.DataTx/DoTransfer",
    )
    assert created.returncode == 0, created.stderr
    transfer_id = json.loads(created.stdout)["transfer_id"]
    status = _grpcurl(
        shared_bridge,
        "-H",
        header,
        "-d",
        json.dumps({"transferId": transfer_id}),
        address,
        "datatx.v1.DataTx/GetStatus",
    )
    assert json.loads(status.stdout)["status"] == "PENDING"
    cs3_list = _grpcurl(
        shared_bridge, "-H", header, "-d", "{}", address, "cs3.tx.v1beta1.TxAPI/ListTransfers"
    )
    reply = json.loads(cs3_list.stdout)
    assert reply["status"]["code"] == "CODE_OK"
    assert transfer_id in {t["id"]["opaqueId"] for t in reply["transfers"]}
    refused = _grpcurl(shared_bridge, "-d", "{}", address, "datatx.v1.DataTx/ListTransfers")
    assert refused.returncode != 0
    assert "Unauthenticated" in refused.stderr
    health = _grpcurl(shared_bridge, address, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING"


def test_metrics_per_method(shared_bridge: Bridge) -> None:
    seed, alice = shared_bridge.seed(), shared_bridge.auth("alice")
    name = seed.DoTransfer(webdav_request(), metadata=alice).transfer_id
    for _ in range(3):
        seed.GetStatus(pb.GetStatusRequest(transfer_id=name), metadata=alice)
    with pytest.raises(grpc.RpcError):
        seed.GetStatus(pb.GetStatusRequest(transfer_id="dt-000000000000"), metadata=alice)
    shared_bridge.cs3().GetTransferStatus(
        tx.GetTransferStatusRequest(tx_id=cs3_tx.TxId(opaque_id="dt-000000000000")), metadata=alice
    )
    text = shared_bridge.metrics()

    def count(method: str, code: str) -> float:
        match = re.search(
            rf'datatx_bridge_grpc_calls_total{{code="{code}",method="{re.escape(method)}"}} (\S+)',
            text,
        )
        return float(match.group(1)) if match else 0.0

    assert count("/datatx.v1.DataTx/GetStatus", "OK") >= 3
    assert count("/datatx.v1.DataTx/GetStatus", "NOT_FOUND") >= 1
    assert count("/cs3.tx.v1beta1.TxAPI/GetTransferStatus", "CODE_NOT_FOUND") >= 1
    assert re.search(
        r'datatx_bridge_grpc_call_seconds_bucket\{le="0.005",method="/datatx.v1.DataTx/GetStatus"\}',
        text,
    )
    assert re.search(r"datatx_bridge_cached_transfers \d", text)
    assert shared_bridge.tokens["alice"] not in text


def test_logs_are_json_lines(shared_bridge: Bridge) -> None:
    shared_bridge.seed().ListTransfers(
        pb.ListTransfersRequest(), metadata=shared_bridge.auth("bob")
    )
    lines = [line for line in shared_bridge.logs().splitlines() if line.strip()]
    assert lines
    entries = [json.loads(line) for line in lines]
    calls = [e for e in entries if e.get("method") == "/datatx.v1.DataTx/ListTransfers"]
    assert calls
    assert {"time", "level", "message", "code", "duration_ms"} <= calls[-1].keys()


def _rolebinding_of(namespace: Namespace, component: str) -> dict[str, Any]:
    """The namespace's RoleBinding of `component`'s ServiceAccount, ready to apply again."""
    out = namespace.cluster.kubectl("get", "rolebindings", "-n", namespace.name, "-o", "json")
    account = namespace.service_account(component)
    (binding,) = [
        item
        for item in json.loads(out.stdout)["items"]
        if any(subject.get("name") == account for subject in item.get("subjects") or ())
    ]
    binding["metadata"] = {
        key: binding["metadata"][key]
        for key in ("name", "namespace", "labels")
        if key in binding["metadata"]
    }
    return dict(binding)


def test_not_serving_until_the_cache_has_listed(
    start_bridge: Launcher, datatx_namespace: Namespace
) -> None:
    """A replica whose cache could not list yet must not be sent calls (it would answer
    from an empty cache): here its RBAC is missing at first, as when a rollout races it."""
    binding = _rolebinding_of(datatx_namespace, "bridge")
    kubectl = datatx_namespace.cluster.kubectl
    kubectl("delete", "rolebinding", binding["metadata"]["name"], "-n", datatx_namespace.name)
    bridge = start_bridge(datatx_namespace, ready=False)
    statuses: list[int] = []

    def watch() -> None:
        for message in bridge.health().Watch(health_pb2.HealthCheckRequest(), timeout=60):
            statuses.append(message.status)
            if message.status == health_pb2.HealthCheckResponse.SERVING:
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    eventually(lambda: _kube_requests(bridge, "list transfers", "403") >= 2)
    for service in ("", "datatx.v1.DataTx", "cs3.tx.v1beta1.TxAPI"):
        answer = bridge.health().Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING, service
    kubectl("apply", "-n", datatx_namespace.name, "-f", "-", input=json.dumps(binding))
    eventually(bridge.serving, timeout=45)
    watcher.join(timeout=10)
    assert statuses == [
        health_pb2.HealthCheckResponse.NOT_SERVING,
        health_pb2.HealthCheckResponse.SERVING,
    ]
    assert _kube_requests(bridge, "list transfers", "ok") >= 1


def _kube_requests(bridge: Bridge, request: str, outcome: str) -> float:
    pattern = rf'datatx_bridge_kube_requests_total{{outcome="{outcome}",request="{request}"}} (\S+)'
    match = re.search(pattern, bridge.metrics())
    return float(match.group(1)) if match else 0.0


def test_graceful_shutdown_drains_calls(bridge: Bridge) -> None:
    """On SIGTERM health turns NOT_SERVING at once, so balancers send no new calls; the
    calls in flight still get real answers, and open streams end, so the stop takes far
    less than the grace period (10 s here)."""
    alice, seed = bridge.auth("alice"), bridge.seed()
    name = seed.DoTransfer(webdav_request(), metadata=alice).transfer_id
    results: dict[str, Any] = {"health": []}

    def destroy() -> None:  # waits for an operator that never comes
        results["destroy"] = seed.DestroyTransfer(
            pb.DestroyTransferRequest(transfer_id=name), metadata=alice, timeout=30
        )

    def watch() -> None:
        stream = bridge.seed().WatchTransfer(
            pb.WatchTransferRequest(transfer_id=name), metadata=alice, timeout=30
        )
        try:
            results["watched"] = [m.status for m in stream]
        except grpc.RpcError as error:
            results["watch_code"] = error.code()  # type: ignore[attr-defined]

    def health() -> None:  # a client-side health check or a load balancer
        stream = bridge.health().Watch(health_pb2.HealthCheckRequest(), timeout=30)
        try:
            results["health"].extend(m.status for m in stream)
        except grpc.RpcError as error:
            results["health_code"] = error.code()  # type: ignore[attr-defined]

    threads = [threading.Thread(target=call) for call in (destroy, watch, health)]
    for thread in threads:
        thread.start()
    eventually(lambda: bridge.transfer(name)["spec"]["cancelRequested"] and results["health"])
    started = time.monotonic()
    bridge.terminate()
    for thread in threads:
        thread.join(timeout=20)
    assert bridge.process is not None
    assert bridge.process.wait(timeout=20) == 0
    assert time.monotonic() - started < 5
    # Health said NOT_SERVING, then its stream ended cleanly (it held no grace period).
    assert results["health"] == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]
    assert "health_code" not in results
    # The call in flight got a real answer; the watch was told to come back.
    assert results["destroy"].result == pb.NOTOK
    assert "shut down" in results["destroy"].text
    assert results["watch_code"] == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError):
        pb_grpc.DataTxStub(grpc.insecure_channel(bridge.addresses["grpc"])).GetStatus(
            pb.GetStatusRequest(transfer_id=name), metadata=alice, timeout=3
        )


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    authority = _Authority(tmp_path)
    server = authority.issue("server", "datatx-bridge", hosts=("127.0.0.1", "localhost"))
    client = authority.issue("client", "alice")
    return {
        "ca": authority.pair.cert,
        "server_cert": server.cert,
        "server_key": server.key,
        "client_cert": client.cert,
        "client_key": client.key,
    }


def _tls_call(bridge: Bridge, certificates: dict[str, Path], *, client_cert: bool) -> Any:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certificates["ca"].read_bytes(),
        private_key=certificates["client_key"].read_bytes() if client_cert else None,
        certificate_chain=certificates["client_cert"].read_bytes() if client_cert else None,
    )
    with grpc.secure_channel(bridge.addresses["grpc"], credentials) as channel:
        return pb_grpc.DataTxStub(channel).ListTransfers(
            pb.ListTransfersRequest(), metadata=bridge.auth("alice"), timeout=5
        )


def _secure(
    start_bridge: Launcher, namespace: Namespace, certificates: dict[str, Path], *, mutual: bool
) -> Bridge:
    """A bridge serving TLS (mutual: it also demands a client certificate of the CA)."""
    settings = {
        "tls_cert_file": str(certificates["server_cert"]),
        "tls_key_file": str(certificates["server_key"]),
    }
    if mutual:
        settings["tls_client_ca_file"] = str(certificates["ca"])
    credentials = grpc.ssl_channel_credentials(
        root_certificates=certificates["ca"].read_bytes(),
        private_key=certificates["client_key"].read_bytes() if mutual else None,
        certificate_chain=certificates["client_cert"].read_bytes() if mutual else None,
    )
    return start_bridge(namespace, credentials=credentials, **settings)


def test_tls_and_mtls(
    start_bridge: Launcher, datatx_namespace: Namespace, certificates: dict[str, Path]
) -> None:
    tls = _secure(start_bridge, datatx_namespace, certificates, mutual=False)
    assert _tls_call(tls, certificates, client_cert=False).transfers == []
    with (
        pytest.raises(grpc.RpcError) as plain,
        grpc.insecure_channel(tls.addresses["grpc"]) as channel,
    ):
        pb_grpc.DataTxStub(channel).ListTransfers(
            pb.ListTransfersRequest(), metadata=tls.auth("alice"), timeout=3
        )
    assert plain.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]

    mtls = _secure(start_bridge, datatx_namespace, certificates, mutual=True)
    assert _tls_call(mtls, certificates, client_cert=True).transfers == []
    with pytest.raises(grpc.RpcError) as anonymous:
        _tls_call(mtls, certificates, client_cert=False)
    assert anonymous.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_replicas_share_the_cluster_state(
    start_bridge: Launcher, datatx_namespace: Namespace
) -> None:
    first, second = start_bridge(datatx_namespace), start_bridge(datatx_namespace)
    alice = first.auth("alice")
    name = first.seed().DoTransfer(webdav_request(request_id="twice"), metadata=alice).transfer_id
    # The other replica answers at once (one GET on a cache miss), then from its watch.
    status = second.seed().GetStatus(pb.GetStatusRequest(transfer_id=name), metadata=alice)
    assert status.status == pb.PENDING
    again = second.seed().DoTransfer(webdav_request(request_id="twice"), metadata=alice)
    assert again.transfer_id == name
    assert len(first.transfers()) == 1
    first.set_status(name, {"phase": "InProgress"})
    eventually(
        lambda: (
            second.cs3()
            .GetTransferStatus(
                tx.GetTransferStatusRequest(tx_id=cs3_tx.TxId(opaque_id=name)), metadata=alice
            )
            .tx_info.status
            == cs3_tx.STATUS_TRANSFER_IN_PROGRESS
        )
    )
    listed = second.cs3().ListTransfers(tx.ListTransfersRequest(), metadata=alice)
    assert listed.status.code == code_pb2.CODE_OK
    assert [t.id.opaque_id for t in listed.transfers] == [name]
