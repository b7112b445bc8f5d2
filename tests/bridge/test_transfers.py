"""Creating and reading transfers through both APIs: what lands in the cluster, idempotency,
reads from the watch-fed cache, the status mapping and the list filters.

No operator runs here: the test plays it by writing the CR status, as the operator would.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import grpc
import pytest
from cs3.rpc.v1beta1 import code_pb2
from cs3.sharing.ocm.v1beta1 import resources_pb2 as ocm
from cs3.tx.v1beta1 import resources_pb2 as cs3_tx
from cs3.tx.v1beta1 import tx_api_pb2 as tx
from cs3.types.v1beta1 import types_pb2 as cs3_types
from google.protobuf.timestamp_pb2 import Timestamp

from datatx.v1 import datatx_pb2 as pb
from datatx_operator import api
from tests.bridge.conftest import Bridge, eventually, invite_request, webdav_request

Filter = tx.ListTransfersRequest.Filter


def _kube_requests(bridge: Bridge) -> Counter[str]:
    """The bridge's requests to the Kubernetes API so far, by request (all outcomes)."""
    pattern = r'datatx_bridge_kube_requests_total\{outcome="[^"]*",request="([^"]+)"\} (\S+)'
    totals: Counter[str] = Counter()
    for request, value in re.findall(pattern, bridge.metrics()):
        totals[request] += float(value)
    return totals


def _kube_requests_but_the_watch(bridge: Bridge) -> Counter[str]:
    """As `_kube_requests`, without the watch (it reopens itself every minute)."""
    totals = _kube_requests(bridge)
    del totals["watch transfers"]
    return totals


def test_do_transfer_writes_cr_and_secrets(shared_bridge: Bridge) -> None:
    request = webdav_request()
    reply = shared_bridge.seed().DoTransfer(request, metadata=shared_bridge.auth("alice"))
    name = reply.transfer_id
    assert re.fullmatch(r"dt-[0-9a-f]{12}", name)
    cr = shared_bridge.transfer(name)
    spec, meta = cr["spec"], cr["metadata"]
    assert spec["source"] == "src:data/in"
    assert spec["destination"] == "dst:data/out"
    assert spec["remotes"][0]["secretOptions"] == ["bearer_token"]
    assert spec["credentialsRef"] == {
        "remotes": api.remotes_secret_name(name),
        "credential": api.credential_secret_name(name),
    }
    assert spec["requester"] == {"user": "alice", "groups": ["physics"]}
    assert meta["labels"][api.LABEL_MANAGED_BY] == api.MANAGED_BY
    token = request.remotes[0].secret_options["bearer_token"]
    assert shared_bridge.secret_data(api.remotes_secret_name(name)) == {"src.bearer_token": token}
    assert shared_bridge.secret_data(api.credential_secret_name(name)) == {
        api.SECRET_KEY_CREDENTIAL: request.credential
    }
    for secret in (api.remotes_secret_name(name), api.credential_secret_name(name)):
        body = json.loads(shared_bridge.kubectl("get", "secret", secret, "-o", "json").stdout)
        owner = body["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
            api.KIND,
            name,
            meta["uid"],
            True,
        )
        assert body["immutable"] is True
    serialized = json.dumps(cr)
    assert token not in serialized
    assert request.credential not in serialized


def test_same_request_id_same_transfer(shared_bridge: Bridge) -> None:
    seed = shared_bridge.seed()
    first = seed.DoTransfer(
        webdav_request(request_id="order-42"), metadata=shared_bridge.auth("alice")
    )
    again = seed.DoTransfer(
        webdav_request(request_id="order-42"), metadata=shared_bridge.auth("alice")
    )
    assert again.transfer_id == first.transfer_id
    assert "earlier call" in again.text
    bobs = seed.DoTransfer(
        webdav_request(request_id="order-42"), metadata=shared_bridge.auth("bob")
    )
    assert bobs.transfer_id != first.transfer_id
    other = seed.DoTransfer(
        webdav_request(request_id="order-43"), metadata=shared_bridge.auth("alice")
    )
    assert other.transfer_id not in (first.transfer_id, bobs.transfer_id)
    names = [item["metadata"]["name"] for item in shared_bridge.transfers()]
    assert names.count(first.transfer_id) == 1

    cs3 = shared_bridge.cs3()
    request = tx.CreateTransferRequest(
        src_target_uri="davs://tok@src.example.org/dav?name=/a",
        dest_target_uri="davs://tok@dst.example.org/dav?name=/b",
    )
    request.opaque.map["request_id"].CopyFrom(cs3_types.OpaqueEntry(decoder="plain", value=b"r-1"))
    one = cs3.CreateTransfer(request, metadata=shared_bridge.auth("alice"))
    two = cs3.CreateTransfer(request, metadata=shared_bridge.auth("alice"))
    assert one.status.code == two.status.code == code_pb2.CODE_OK
    assert one.tx_info.id.opaque_id == two.tx_info.id.opaque_id


def test_cs3_create_keeps_tokens_in_secrets(shared_bridge: Bridge) -> None:
    src_token, dest_token = "src-tok-Zq81", "dst-tok-Xw07"
    request = tx.CreateTransferRequest(
        src_target_uri=f"davs://{src_token}@cernbox.example.org/remote.php/dav/ocm?name=/share/data",
        dest_target_uri=f"davs://{dest_token}@other.example.org:8443/webdav?name=/incoming",
        share_id=ocm.ShareId(opaque_id="share-7"),
    )
    reply = shared_bridge.cs3().CreateTransfer(request, metadata=shared_bridge.auth("alice"))
    assert reply.status.code == code_pb2.CODE_OK, reply.status
    info = reply.tx_info
    name = info.id.opaque_id
    assert info.status == cs3_tx.STATUS_TRANSFER_NEW
    assert (info.creator.opaque_id, info.share_id.opaque_id) == ("alice", "share-7")
    assert info.description
    cr = shared_bridge.transfer(name)
    assert src_token not in json.dumps(cr)
    assert dest_token not in json.dumps(cr)
    remotes = {remote["name"]: remote for remote in cr["spec"]["remotes"]}
    assert remotes["src"]["options"]["url"] == "https://cernbox.example.org/remote.php/dav/ocm"
    assert remotes["dest"]["options"]["url"] == "https://other.example.org:8443/webdav"
    assert (cr["spec"]["source"], cr["spec"]["destination"]) == ("src:share/data", "dest:incoming")
    assert shared_bridge.secret_data(api.remotes_secret_name(name)) == {
        "src.bearer_token": src_token
    }
    assert shared_bridge.secret_data(api.credential_secret_name(name)) == {"credential": dest_token}

    plain = tx.CreateTransferRequest(
        src_target_uri="https://public.example.org/data/set1",
        dest_target_uri="davs://dest.example.org/in",
    )
    plain.opaque.map["invitee_email"].CopyFrom(
        cs3_types.OpaqueEntry(decoder="plain", value=b"d@x.org")
    )
    reply = shared_bridge.cs3().CreateTransfer(plain, metadata=shared_bridge.auth("alice"))
    assert reply.status.code == code_pb2.CODE_OK, reply.status
    spec = shared_bridge.transfer(reply.tx_info.id.opaque_id)["spec"]
    assert spec["source"] == "src:data/set1"
    assert spec["invite"]["invitee"]["email"] == "d@x.org"
    assert "credential" not in spec["credentialsRef"]


def test_reads_come_from_the_cache(shared_bridge: Bridge) -> None:
    seed, alice = shared_bridge.seed(), shared_bridge.auth("alice")
    name = seed.DoTransfer(webdav_request(), metadata=alice).transfer_id
    # Read-your-writes: readable at once, from the create's response.
    assert (
        seed.GetStatus(pb.GetStatusRequest(transfer_id=name), metadata=alice).status == pb.PENDING
    )
    before = _kube_requests_but_the_watch(shared_bridge)
    assert before["list transfers"] >= 1  # the cache listed once, at the start
    cs3 = shared_bridge.cs3()
    for _ in range(200):
        seed.GetStatus(pb.GetStatusRequest(transfer_id=name), metadata=alice)
        seed.ListTransfers(pb.ListTransfersRequest(page_size=5), metadata=alice)
    for _ in range(20):
        cs3.GetTransferStatus(
            tx.GetTransferStatusRequest(tx_id=cs3_tx.TxId(opaque_id=name)), metadata=alice
        )
        cs3.ListTransfers(tx.ListTransfersRequest(), metadata=alice)
    # No GET, no LIST, nothing at all per read: only the watch talks to the API.
    assert _kube_requests_but_the_watch(shared_bridge) == before
    # A change made behind the bridge's back arrives through the watch.
    shared_bridge.set_status(name, {"phase": "InProgress"})
    eventually(
        lambda: (
            seed.GetStatus(pb.GetStatusRequest(transfer_id=name), metadata=alice).status
            == pb.IN_PROGRESS
        )
    )


def test_a_deleted_transfer_leaves_the_cache(shared_bridge: Bridge) -> None:
    """When the operator deletes a CR (its cache time ended), both APIs forget it."""
    seed, cs3, alice = shared_bridge.seed(), shared_bridge.cs3(), shared_bridge.auth("alice")
    name = seed.DoTransfer(webdav_request(), metadata=alice).transfer_id
    kept = seed.DoTransfer(webdav_request(), metadata=alice).transfer_id
    shared_bridge.set_status(name, {"phase": "InProgress"})
    watch = seed.WatchTransfer(
        pb.WatchTransferRequest(transfer_id=name), metadata=alice, timeout=30
    )
    assert next(watch).status in (pb.PENDING, pb.IN_PROGRESS)  # the bridge is watching it

    def seed_listed() -> set[str]:
        reply = seed.ListTransfers(pb.ListTransfersRequest(), metadata=alice)
        return {t.transfer_id for t in reply.transfers}

    def cs3_listed() -> set[str]:
        return {
            t.id.opaque_id
            for t in cs3.ListTransfers(tx.ListTransfersRequest(), metadata=alice).transfers
        }

    assert {name, kept} <= seed_listed()
    shared_bridge.kubectl("delete", f"{api.PLURAL}.{api.GROUP}", name, "--wait=true")
    eventually(lambda: name not in seed_listed())
    assert name not in cs3_listed()
    assert kept in seed_listed() & cs3_listed()
    with pytest.raises(grpc.RpcError) as caught:
        seed.GetStatus(pb.GetStatusRequest(transfer_id=name), metadata=alice)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    reply = cs3.GetTransferStatus(
        tx.GetTransferStatusRequest(tx_id=cs3_tx.TxId(opaque_id=name)), metadata=alice
    )
    assert reply.status.code == code_pb2.CODE_NOT_FOUND
    # A watch of it ends cleanly, without a final status it never had.
    assert set(m.status for m in watch) <= {pb.IN_PROGRESS}


STATUS_CASES = [
    # (status written by the "operator", spec answer, seed status, CS3 status, text fragment)
    ({"phase": "Pending"}, None, pb.PENDING, cs3_tx.STATUS_TRANSFER_NEW, "waiting for its run"),
    (
        {"phase": "Pending"},
        "Accepted",
        pb.PENDING,
        cs3_tx.STATUS_TRANSFER_ACCEPTED,
        "invite accepted",
    ),
    (
        {"phase": "WaitingForInviteAcceptance", "invite": {"deadline": "2099-01-01T00:00:00Z"}},
        None,
        pb.WAITING_FOR_INVITE_ACCEPTANCE,
        cs3_tx.STATUS_TRANSFER_AWAITING_ACCEPTANCE,
        "waiting for the invitee",
    ),
    (
        {
            "phase": "InProgress",
            "progress": {
                "bytes": 3 * 2**20,
                "totalBytes": 12 * 2**20,
                "files": 3,
                "totalFiles": 12,
                "rateBytesPerSecond": 2**20,
                "etaSeconds": 9,
                "percent": 25,
            },
        },
        None,
        pb.IN_PROGRESS,
        cs3_tx.STATUS_TRANSFER_IN_PROGRESS,
        "25%, 3.0 MiB of 12.0 MiB, 3 of 12 files, 1.0 MiB/s, ETA 9 s",
    ),
    (
        {"phase": "Finished", "result": {"files": 12, "bytes": 12 * 2**20}},
        None,
        pb.FINISHED,
        cs3_tx.STATUS_TRANSFER_COMPLETE,
        "finished: 12 files, 12.0 MiB",
    ),
    (
        {"phase": "Failed", "reason": "AuthenticationFailed", "message": "401 from destination"},
        None,
        pb.FAILED,
        cs3_tx.STATUS_TRANSFER_FAILED,
        "failed (AuthenticationFailed): 401 from destination",
    ),
    ({"phase": "Cancelled"}, None, pb.CANCELLED, cs3_tx.STATUS_TRANSFER_CANCELLED, "cancelled"),
    (
        {"phase": "InviteDeclined"},
        "Declined",
        pb.INVITE_DECLINED,
        cs3_tx.STATUS_TRANSFER_CANCELLED,
        "the invitee declined",
    ),
    (
        {"phase": "InviteNotAcceptedOnTime"},
        None,
        pb.INVITE_NOT_ACCEPTED_ON_TIME,
        cs3_tx.STATUS_TRANSFER_EXPIRED,
        "not accepted on time",
    ),
    (  # as the operator reports a cancel the remote side refused
        {"phase": "Cancelled", "reason": "CancelFailed", "message": "FTS refused"},
        None,
        pb.CANCELLED,
        cs3_tx.STATUS_TRANSFER_CANCEL_FAILED,
        "cancel failed: FTS refused",
    ),
]


@pytest.mark.parametrize("case", range(len(STATUS_CASES)))
def test_status_mapping(shared_bridge: Bridge, case: int) -> None:
    status, answer, seed_status, cs3_status, text = STATUS_CASES[case]
    alice = shared_bridge.auth("alice")
    name = shared_bridge.seed().DoTransfer(invite_request(), metadata=alice).transfer_id
    if answer:
        shared_bridge.kubectl(
            "patch", f"{api.PLURAL}.{api.GROUP}", name, "--type=merge",
            "-p", json.dumps({"spec": {"invite": {"response": answer}}}),
        )  # fmt: skip
    shared_bridge.set_status(name, status)
    reply = eventually(
        lambda: (
            (
                r := shared_bridge.seed().GetStatus(
                    pb.GetStatusRequest(transfer_id=name), metadata=alice
                )
            ).status
            == seed_status
            and text in r.text
            and r
        )
    )
    assert reply.transfer.status == seed_status
    if status["phase"] == "InProgress":
        progress = reply.progress
        assert (progress.bytes, progress.total_bytes, progress.files, progress.total_files) == (
            3 * 2**20,
            12 * 2**20,
            3,
            12,
        )
        assert (progress.rate_bytes_per_second, progress.eta_seconds, progress.percent) == (
            2**20,
            9,
            25,
        )
    info = shared_bridge.cs3().GetTransferStatus(
        tx.GetTransferStatusRequest(tx_id=cs3_tx.TxId(opaque_id=name)), metadata=alice
    )
    assert info.status.code == code_pb2.CODE_OK
    assert info.tx_info.status == cs3_status
    assert text in info.tx_info.description


def test_list_filters(bridge: Bridge) -> None:
    """Seed filters: AND between kinds, OR within one; CS3: same-type OR, cross-type AND."""
    seed, cs3, alice = bridge.seed(), bridge.cs3(), bridge.auth("alice")
    names = [seed.DoTransfer(webdav_request(), metadata=alice).transfer_id for _ in range(5)]
    shared = tx.CreateTransferRequest(
        src_target_uri="davs://t@a.example.org/x?name=/1",
        dest_target_uri="davs://t@b.example.org/y?name=/2",
        share_id=ocm.ShareId(opaque_id="share-1"),
    )
    names.append(bridge.cs3().CreateTransfer(shared, metadata=alice).tx_info.id.opaque_id)
    phases = ["Pending", "InProgress", "Finished", "Failed", "Cancelled", "Finished"]
    for name, phase in zip(names, phases, strict=True):
        if phase != "Pending":
            bridge.set_status(name, {"phase": phase})
    eventually(
        lambda: (
            len(
                seed.ListTransfers(
                    pb.ListTransfersRequest(statuses=[pb.FINISHED]), metadata=alice
                ).transfers
            )
            == 2
        )
    )

    def listed(**fields: object) -> set[str]:
        reply = seed.ListTransfers(pb.ListTransfersRequest(**fields), metadata=alice)  # type: ignore[arg-type]
        return {t.transfer_id for t in reply.transfers}

    assert listed() == set(names)
    assert listed(statuses=[pb.FINISHED, pb.FAILED]) == {names[2], names[3], names[5]}
    assert listed(statuses=[pb.FINISHED], drivers=["rclone"]) == {names[2], names[5]}
    assert listed(drivers=["fts"]) == set()
    past, future = (Timestamp(seconds=int(time.time()) + hours * 3600) for hours in (-1, 1))
    assert listed(created_after=past) == set(names)
    assert listed(created_before=past) == set()
    assert listed(created_after=future) == set()
    assert listed(created_before=future, statuses=[pb.PENDING]) == {names[0]}
    # The creation times split the list where they should, even within one second.
    created = seed.GetStatus(
        pb.GetStatusRequest(transfer_id=names[3]), metadata=alice
    ).transfer.create_time
    assert listed(created_after=created) == set(names[3:])
    assert listed(created_before=created) == set(names[:3])

    # Paging: oldest first, every transfer exactly once.
    seen: list[str] = []
    token = ""
    while True:
        page = seed.ListTransfers(
            pb.ListTransfersRequest(page_size=2, page_token=token), metadata=alice
        )
        assert len(page.transfers) <= 2
        seen.extend(t.transfer_id for t in page.transfers)
        token = page.next_page_token
        if not token:
            break
    assert seen == names

    def cs3_listed(*filters: Filter) -> set[str]:
        reply = cs3.ListTransfers(tx.ListTransfersRequest(filters=list(filters)), metadata=alice)
        assert reply.status.code == code_pb2.CODE_OK
        return {t.id.opaque_id for t in reply.transfers}

    everything = cs3.ListTransfers(tx.ListTransfersRequest(), metadata=alice).transfers
    assert [t.id.opaque_id for t in everything] == names  # oldest first too

    complete = Filter(type=Filter.TYPE_STATUS, status=cs3_tx.STATUS_TRANSFER_COMPLETE)
    failed = Filter(type=Filter.TYPE_STATUS, status=cs3_tx.STATUS_TRANSFER_FAILED)
    share = Filter(type=Filter.TYPE_SHARE_ID, share_id=ocm.ShareId(opaque_id="share-1"))
    by_id = Filter(type=Filter.TYPE_TX_ID, tx_id=cs3_tx.TxId(opaque_id=names[3]))
    assert cs3_listed() == set(names)
    assert cs3_listed(complete) == {names[2], names[5]}
    assert cs3_listed(complete, failed) == {names[2], names[3], names[5]}
    assert cs3_listed(complete, share) == {names[5]}
    assert cs3_listed(complete, failed, by_id) == {names[3]}
    assert cs3_listed(share, by_id) == set()


def test_unknown_transfer_is_not_found(shared_bridge: Bridge) -> None:
    alice = shared_bridge.auth("alice")
    with pytest.raises(grpc.RpcError) as caught:
        shared_bridge.seed().GetStatus(
            pb.GetStatusRequest(transfer_id="dt-ffffffffffff"), metadata=alice
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    reply = shared_bridge.cs3().RetryTransfer(
        tx.RetryTransferRequest(tx_id=cs3_tx.TxId(opaque_id="dt-ffffffffffff")), metadata=alice
    )
    assert reply.status.code == code_pb2.CODE_NOT_FOUND
