"""Who may do what: a transfer belongs to its creator; other users cannot see or touch it
(it reads as not found), admins see and act on all; no token or a bad token gets nothing.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from cs3.rpc.v1beta1 import code_pb2
from cs3.tx.v1beta1 import resources_pb2 as cs3_tx
from cs3.tx.v1beta1 import tx_api_pb2 as tx

from datatx.v1 import datatx_pb2 as pb
from tests.bridge.conftest import Bridge, eventually, no_new_transfers, webdav_request

Metadata = list[tuple[str, str]]


def _seed_code(call: Any, request: Any, metadata: Metadata) -> grpc.StatusCode:
    try:
        reply = call(request, metadata=metadata, timeout=10)
        if hasattr(reply, "__iter__") and not hasattr(reply, "ListFields"):
            list(reply)  # a stream: read it to the end
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        return code
    return grpc.StatusCode.OK


def _failed_transfer(bridge: Bridge, user: str) -> str:
    """A transfer of `user` that the operator (played by the test) reported as failed."""
    reply = bridge.seed().DoTransfer(webdav_request(), metadata=bridge.auth(user), timeout=10)
    bridge.set_status(reply.transfer_id, {"phase": "Failed", "reason": "NetworkError"})
    return str(reply.transfer_id)


def _bad_credentials(bridge: Bridge) -> dict[str, Metadata]:
    other_secret = bridge.reva_token("alice", secret="another-secret-of-32-bytes-length")
    no_exp = bridge.reva_token("alice", expires_in=None)  # reva's always expire: required
    return {
        "no token": [],
        "unknown static token": [("authorization", "Bearer not-a-known-token")],
        "not bearer": [("authorization", f"Basic {bridge.tokens['alice']}")],
        "jwt with another secret": [("x-access-token", other_secret)],
        "bearer jwt with another secret": [("authorization", f"Bearer {other_secret}")],
        "expired jwt": [("x-access-token", bridge.reva_token("alice", expires_in=-60))],
        "jwt without exp": [("x-access-token", no_exp)],
        "bearer jwt without exp": [("authorization", f"Bearer {no_exp}")],
        "jwt for another audience": [("x-access-token", bridge.reva_token("alice", aud="other"))],
        "jwt signed with none": [("x-access-token", bridge.reva_token("alice", algorithm="none"))],
        "garbage jwt": [("x-access-token", "a.b.c")],
    }


def test_no_or_bad_token_gets_nothing(bridge: Bridge) -> None:
    transfer = _failed_transfer(bridge, "alice")
    seed, cs3 = bridge.seed(), bridge.cs3()
    tx_id = cs3_tx.TxId(opaque_id=transfer)
    with no_new_transfers(bridge):
        for case, metadata in _bad_credentials(bridge).items():
            for call, request in (
                (seed.DoTransfer, webdav_request()),
                (seed.GetStatus, pb.GetStatusRequest(transfer_id=transfer)),
                (seed.DestroyTransfer, pb.DestroyTransferRequest(transfer_id=transfer)),
                (seed.ListTransfers, pb.ListTransfersRequest()),
                (seed.WatchTransfer, pb.WatchTransferRequest(transfer_id=transfer)),
            ):
                assert _seed_code(call, request, metadata) == grpc.StatusCode.UNAUTHENTICATED, case
            for call, request in (
                (cs3.CreateTransfer, tx.CreateTransferRequest(src_target_uri="davs://t@h/x")),
                (cs3.GetTransferStatus, tx.GetTransferStatusRequest(tx_id=tx_id)),
                (cs3.CancelTransfer, tx.CancelTransferRequest(tx_id=tx_id)),
                (cs3.RetryTransfer, tx.RetryTransferRequest(tx_id=tx_id)),
                (cs3.ListTransfers, tx.ListTransfersRequest()),
            ):
                reply = call(request, metadata=metadata, timeout=10)
                assert reply.status.code == code_pb2.CODE_UNAUTHENTICATED, case
                assert not reply.HasField("tx_info") if hasattr(reply, "tx_info") else True
    spec = bridge.transfer(transfer)["spec"]
    assert (spec["restarts"], spec["cancelRequested"]) == (0, False)


def test_other_users_transfers_are_invisible(bridge: Bridge) -> None:
    alice_transfer = _failed_transfer(bridge, "alice")
    bob_transfer = _failed_transfer(bridge, "bob")
    seed, cs3 = bridge.seed(), bridge.cs3()
    bob = bridge.auth("bob")
    tx_id = cs3_tx.TxId(opaque_id=alice_transfer)
    eventually(lambda: bridge.transfer(alice_transfer)["status"]["phase"] == "Failed")

    for call, request in (
        (seed.GetStatus, pb.GetStatusRequest(transfer_id=alice_transfer)),
        (seed.DestroyTransfer, pb.DestroyTransferRequest(transfer_id=alice_transfer)),
        (seed.WatchTransfer, pb.WatchTransferRequest(transfer_id=alice_transfer)),
    ):
        assert _seed_code(call, request, bob) == grpc.StatusCode.NOT_FOUND
    for call, request in (
        (cs3.GetTransferStatus, tx.GetTransferStatusRequest(tx_id=tx_id)),
        (cs3.CancelTransfer, tx.CancelTransferRequest(tx_id=tx_id)),
        (cs3.RetryTransfer, tx.RetryTransferRequest(tx_id=tx_id)),
    ):
        reply = call(request, metadata=bob, timeout=10)
        assert reply.status.code == code_pb2.CODE_NOT_FOUND
        assert not reply.HasField("tx_info")
    # The same answer as for a transfer that does not exist: nothing is revealed.
    missing = seed.GetStatus
    with pytest.raises(grpc.RpcError) as unknown:
        missing(pb.GetStatusRequest(transfer_id="dt-000000000000"), metadata=bob, timeout=10)
    with pytest.raises(grpc.RpcError) as foreign:
        missing(pb.GetStatusRequest(transfer_id=alice_transfer), metadata=bob, timeout=10)
    assert unknown.value.details().replace(
        "dt-000000000000", "X"
    ) == foreign.value.details().replace(  # type: ignore[attr-defined]
        alice_transfer, "X"
    )

    listed = {
        t.transfer_id for t in seed.ListTransfers(pb.ListTransfersRequest(), metadata=bob).transfers
    }
    assert listed == {bob_transfer}
    cs3_listed = {
        t.id.opaque_id for t in cs3.ListTransfers(tx.ListTransfersRequest(), metadata=bob).transfers
    }
    assert cs3_listed == {bob_transfer}
    by_id = tx.ListTransfersRequest(
        filters=[
            tx.ListTransfersRequest.Filter(
                type=tx.ListTransfersRequest.Filter.TYPE_TX_ID, tx_id=tx_id
            )
        ]
    )
    assert not cs3.ListTransfers(by_id, metadata=bob).transfers
    with pytest.raises(grpc.RpcError) as other_owner:
        seed.ListTransfers(pb.ListTransfersRequest(owner="alice"), metadata=bob, timeout=10)
    assert other_owner.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]

    # Nothing bob tried changed alice's transfer.
    spec = bridge.transfer(alice_transfer)["spec"]
    assert (spec["restarts"], spec["cancelRequested"], spec.get("destroyRequested")) == (
        0,
        False,
        False,
    )


def test_owner_and_admin_may_act(bridge: Bridge) -> None:
    alice_transfer = _failed_transfer(bridge, "alice")
    bob_transfer = _failed_transfer(bridge, "bob")
    seed, cs3 = bridge.seed(), bridge.cs3()
    alice, carol = bridge.auth("alice"), bridge.auth("carol")
    eventually(
        lambda: (
            seed.GetStatus(pb.GetStatusRequest(transfer_id=alice_transfer), metadata=alice).status
            == pb.FAILED
        )
    )

    for user in (alice, carol):
        status = seed.GetStatus(pb.GetStatusRequest(transfer_id=alice_transfer), metadata=user)
        assert status.transfer.owner == "alice"
        watched = list(
            seed.WatchTransfer(
                pb.WatchTransferRequest(transfer_id=alice_transfer), metadata=user, timeout=10
            )
        )
        assert [m.status for m in watched] == [pb.FAILED]

    admin_list = {
        t.transfer_id
        for t in seed.ListTransfers(pb.ListTransfersRequest(), metadata=carol).transfers
    }
    assert {alice_transfer, bob_transfer} <= admin_list
    only_bob = seed.ListTransfers(pb.ListTransfersRequest(owner="bob"), metadata=carol).transfers
    assert {t.transfer_id for t in only_bob} == {bob_transfer}
    cs3_admin = {
        t.id.opaque_id
        for t in cs3.ListTransfers(tx.ListTransfersRequest(), metadata=carol).transfers
    }
    assert {alice_transfer, bob_transfer} <= cs3_admin

    retried = cs3.RetryTransfer(
        tx.RetryTransferRequest(tx_id=cs3_tx.TxId(opaque_id=bob_transfer)), metadata=carol
    )
    assert retried.status.code == code_pb2.CODE_OK
    assert bridge.transfer(bob_transfer)["spec"]["restarts"] == 1
    retried = cs3.RetryTransfer(
        tx.RetryTransferRequest(tx_id=cs3_tx.TxId(opaque_id=alice_transfer)), metadata=alice
    )
    assert retried.status.code == code_pb2.CODE_OK
    assert bridge.transfer(alice_transfer)["spec"]["restarts"] == 1

    destroyed = seed.DestroyTransfer(
        pb.DestroyTransferRequest(transfer_id=bob_transfer), metadata=carol, timeout=20
    )
    spec = bridge.transfer(bob_transfer)["spec"]
    assert (spec["cancelRequested"], spec["destroyRequested"]) == (True, True)
    assert destroyed.result == pb.OK  # it had failed already: nothing left to stop


def test_reva_jwt_identifies_the_user(bridge: Bridge) -> None:
    """An x-access-token from reva: the user is (idp, opaque_id); CS3 creator says so."""
    einstein = [("x-access-token", bridge.reva_token("einstein", groups=("physics",)))]
    reply = bridge.seed().DoTransfer(webdav_request(), metadata=einstein, timeout=10)
    info = bridge.cs3().GetTransferStatus(
        tx.GetTransferStatusRequest(tx_id=cs3_tx.TxId(opaque_id=reply.transfer_id)),
        metadata=einstein,
    )
    assert info.status.code == code_pb2.CODE_OK
    assert (info.tx_info.creator.idp, info.tx_info.creator.opaque_id) == (
        "https://cernbox.example.org",
        "einstein",
    )
    assert abs(info.tx_info.ctime.seconds - time.time()) < 120
    # The same JWT as `authorization: Bearer` (as documented): the same user, who sees it.
    bearer = [("authorization", f"Bearer {einstein[0][1]}")]
    status = bridge.seed().GetStatus(
        pb.GetStatusRequest(transfer_id=reply.transfer_id), metadata=bearer
    )
    assert status.transfer.owner == "einstein"
    listed = bridge.cs3().ListTransfers(tx.ListTransfersRequest(), metadata=bearer)
    assert [t.id.opaque_id for t in listed.transfers] == [reply.transfer_id]
    assert listed.transfers[0].creator.idp == "https://cernbox.example.org"
    # Same opaque id at another identity provider: another user.
    other_idp = [("x-access-token", bridge.reva_token("einstein", idp="https://other.example.org"))]
    with pytest.raises(grpc.RpcError) as caught:
        bridge.seed().GetStatus(
            pb.GetStatusRequest(transfer_id=reply.transfer_id), metadata=other_idp
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    # The admin group in the JWT's groups grants admin rights.
    admin = [("x-access-token", bridge.reva_token("root", groups=("datatx-admins",)))]
    status = bridge.seed().GetStatus(
        pb.GetStatusRequest(transfer_id=reply.transfer_id), metadata=admin
    )
    assert status.transfer.owner == "einstein"
