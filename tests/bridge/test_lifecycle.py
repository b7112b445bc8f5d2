"""Following and stopping transfers: WatchTransfer, DestroyTransfer, CS3 Cancel and Retry.

The test plays the operator (it writes the CR status as the operator would), so each
answer of the bridge can be checked against a known reaction, including none at all.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from cs3.rpc.v1beta1 import code_pb2
from cs3.tx.v1beta1 import resources_pb2 as cs3_tx
from cs3.tx.v1beta1 import tx_api_pb2 as tx

from datatx.v1 import datatx_pb2 as pb
from tests.bridge.conftest import Bridge, eventually, webdav_request


def _create(bridge: Bridge, user: str = "alice") -> str:
    reply = bridge.seed().DoTransfer(webdav_request(), metadata=bridge.auth(user), timeout=10)
    return str(reply.transfer_id)


def _in_background(call: Callable[[], Any]) -> Future[Any]:
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


def _operator_reacts(bridge: Bridge, name: str, status: dict[str, Any], *, destroy: bool) -> None:
    """Wait for the stop request in the spec, then report `status`."""

    def requested() -> bool:
        spec = bridge.transfer(name)["spec"]
        return bool(spec["cancelRequested"]) and bool(spec.get("destroyRequested")) == destroy

    eventually(requested)
    bridge.set_status(name, status)


def _tx(name: str) -> cs3_tx.TxId:
    return cs3_tx.TxId(opaque_id=name)


def test_watch_streams_changes_until_the_end(shared_bridge: Bridge) -> None:
    alice = shared_bridge.auth("alice")
    name = _create(shared_bridge)
    received: list[pb.Transfer] = []
    first = threading.Event()

    def watch() -> None:
        stream = shared_bridge.seed().WatchTransfer(
            pb.WatchTransferRequest(transfer_id=name), metadata=alice, timeout=60
        )
        for message in stream:
            received.append(message)
            first.set()

    done = _in_background(watch)
    assert first.wait(10)
    for percent in (10, 60):
        shared_bridge.set_status(
            name, {"phase": "InProgress", "progress": {"percent": percent, "bytes": percent}}
        )
        eventually(lambda p=percent: received[-1].progress.percent == p)  # type: ignore[misc]
    shared_bridge.set_status(name, {"phase": "Finished"})
    done.result(timeout=20)  # the stream ended by itself
    statuses = [message.status for message in received]
    assert statuses[0] == pb.PENDING
    assert statuses[-1] == pb.FINISHED
    assert [m.progress.percent for m in received if m.status == pb.IN_PROGRESS] == [10, 60]
    # No duplicates: each message differs from the one before.
    assert all(a != b for a, b in itertools.pairwise(received))

    # A transfer that already ended: one message, then the end.
    again = list(
        shared_bridge.seed().WatchTransfer(
            pb.WatchTransferRequest(transfer_id=name), metadata=alice
        )
    )
    assert [m.status for m in again] == [pb.FINISHED]


def test_destroy_is_ok_once_the_operator_confirms(shared_bridge: Bridge) -> None:
    name = _create(shared_bridge)
    shared_bridge.set_status(name, {"phase": "InProgress"})
    destroy = _in_background(
        lambda: shared_bridge.seed().DestroyTransfer(
            pb.DestroyTransferRequest(transfer_id=name),
            metadata=shared_bridge.auth("alice"),
            timeout=30,
        )
    )
    time.sleep(1)
    assert not destroy.done()  # waits for the operator
    _operator_reacts(
        shared_bridge, name, {"phase": "Cancelled", "reason": "Cancelled"}, destroy=True
    )
    reply = destroy.result(timeout=10)
    assert reply.result == pb.OK
    assert "cancelled" in reply.text
    status = shared_bridge.seed().GetStatus(
        pb.GetStatusRequest(transfer_id=name), metadata=shared_bridge.auth("alice")
    )
    assert status.status == pb.CANCELLED  # the record stays readable


def test_cs3_cancel_keeps_the_credentials_and_allows_a_retry(shared_bridge: Bridge) -> None:
    alice, cs3 = shared_bridge.auth("alice"), shared_bridge.cs3()
    name = _create(shared_bridge)
    shared_bridge.set_status(name, {"phase": "InProgress"})
    cancel = _in_background(
        lambda: cs3.CancelTransfer(
            tx.CancelTransferRequest(tx_id=_tx(name)), metadata=alice, timeout=30
        )
    )
    _operator_reacts(
        shared_bridge, name, {"phase": "Cancelled", "reason": "Cancelled"}, destroy=False
    )
    reply = cancel.result(timeout=10)
    assert reply.status.code == code_pb2.CODE_OK, reply.status
    assert reply.tx_info.status == cs3_tx.STATUS_TRANSFER_CANCELLED
    assert shared_bridge.transfer(name)["spec"].get("destroyRequested") is False

    retried = cs3.RetryTransfer(tx.RetryTransferRequest(tx_id=_tx(name)), metadata=alice)
    assert retried.status.code == code_pb2.CODE_OK
    assert retried.tx_info.status == cs3_tx.STATUS_TRANSFER_NEW
    spec = shared_bridge.transfer(name)["spec"]
    assert (spec["restarts"], spec["cancelRequested"]) == (1, False)

    shared_bridge.set_status(name, {"phase": "InProgress"})
    eventually(
        lambda: (
            cs3.GetTransferStatus(
                tx.GetTransferStatusRequest(tx_id=_tx(name)), metadata=alice
            ).tx_info.status
            == cs3_tx.STATUS_TRANSFER_IN_PROGRESS
        )
    )
    running = cs3.RetryTransfer(tx.RetryTransferRequest(tx_id=_tx(name)), metadata=alice)
    assert running.status.code == code_pb2.CODE_FAILED_PRECONDITION
    assert running.tx_info.status == cs3_tx.STATUS_TRANSFER_IN_PROGRESS
    assert shared_bridge.transfer(name)["spec"]["restarts"] == 1


def test_cancel_that_cannot_stop_the_remote_job(shared_bridge: Bridge) -> None:
    alice, cs3 = shared_bridge.auth("alice"), shared_bridge.cs3()
    name = _create(shared_bridge)
    shared_bridge.set_status(name, {"phase": "InProgress"})
    cancel = _in_background(
        lambda: cs3.CancelTransfer(
            tx.CancelTransferRequest(tx_id=_tx(name)), metadata=alice, timeout=30
        )
    )
    failed = {"phase": "Cancelled", "reason": "CancelFailed", "message": "FTS job 7 still active"}
    _operator_reacts(shared_bridge, name, failed, destroy=False)
    reply = cancel.result(timeout=10)
    assert reply.status.code == code_pb2.CODE_ABORTED
    assert reply.tx_info.status == cs3_tx.STATUS_TRANSFER_CANCEL_FAILED
    assert "FTS job 7 still active" in reply.status.message
    destroyed = shared_bridge.seed().DestroyTransfer(
        pb.DestroyTransferRequest(transfer_id=name), metadata=alice
    )
    assert destroyed.result == pb.NOTOK
    assert "cancel failed" in destroyed.text


def test_stop_not_confirmed_in_time(shared_bridge: Bridge) -> None:
    """No operator answers: after the configured wait (5 s here) the caller hears so."""
    alice = shared_bridge.auth("alice")
    name = _create(shared_bridge)
    started = time.monotonic()
    reply = shared_bridge.seed().DestroyTransfer(
        pb.DestroyTransferRequest(transfer_id=name), metadata=alice, timeout=30
    )
    assert reply.result == pb.NOTOK
    assert "did not confirm" in reply.text
    assert 4 <= time.monotonic() - started < 15
    other = _create(shared_bridge)
    answer = shared_bridge.cs3().CancelTransfer(
        tx.CancelTransferRequest(tx_id=_tx(other)), metadata=alice, timeout=30
    )
    assert answer.status.code == code_pb2.CODE_DEADLINE_EXCEEDED
    assert answer.tx_info.status == cs3_tx.STATUS_TRANSFER_CANCEL_FAILED


def test_cancel_or_retry_of_ended_transfers(shared_bridge: Bridge) -> None:
    alice, cs3 = shared_bridge.auth("alice"), shared_bridge.cs3()
    finished = _create(shared_bridge)
    shared_bridge.set_status(finished, {"phase": "Finished"})
    eventually(
        lambda: (
            cs3.GetTransferStatus(
                tx.GetTransferStatusRequest(tx_id=_tx(finished)), metadata=alice
            ).tx_info.status
            == cs3_tx.STATUS_TRANSFER_COMPLETE
        )
    )
    reply = cs3.CancelTransfer(tx.CancelTransferRequest(tx_id=_tx(finished)), metadata=alice)
    assert reply.status.code == code_pb2.CODE_FAILED_PRECONDITION
    assert reply.tx_info.status == cs3_tx.STATUS_TRANSFER_COMPLETE
    assert shared_bridge.transfer(finished)["spec"]["cancelRequested"] is False
    reply = cs3.RetryTransfer(tx.RetryTransferRequest(tx_id=_tx(finished)), metadata=alice)
    assert reply.status.code == code_pb2.CODE_FAILED_PRECONDITION
    # Destroy of an ended transfer: OK at once (nothing runs), credentials go.
    destroyed = shared_bridge.seed().DestroyTransfer(
        pb.DestroyTransferRequest(transfer_id=finished), metadata=alice
    )
    assert destroyed.result == pb.OK
    assert shared_bridge.transfer(finished)["spec"]["destroyRequested"] is True

    failed = _create(shared_bridge)
    shared_bridge.set_status(failed, {"phase": "Failed", "reason": "NetworkError"})
    eventually(lambda: shared_bridge.transfer(failed)["status"]["phase"] == "Failed")
    shared_bridge.seed().DestroyTransfer(
        pb.DestroyTransferRequest(transfer_id=failed), metadata=alice
    )
    reply = cs3.RetryTransfer(tx.RetryTransferRequest(tx_id=_tx(failed)), metadata=alice)
    assert reply.status.code == code_pb2.CODE_FAILED_PRECONDITION
    assert "destroyed" in reply.status.message
    assert shared_bridge.transfer(failed)["spec"]["restarts"] == 0


def test_unknown_transfer_cannot_be_stopped(shared_bridge: Bridge) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        shared_bridge.seed().DestroyTransfer(
            pb.DestroyTransferRequest(transfer_id="dt-aaaaaaaaaaaa"),
            metadata=shared_bridge.auth("alice"),
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
