"""Bad input gets INVALID_ARGUMENT naming the field and the reason, and creates nothing.

Every case changes one field of a valid request. The error text must name the field (in
the caller's API's terms) and must not quote secrets the request carried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from cs3.rpc.v1beta1 import code_pb2
from cs3.sharing.ocm.v1beta1 import resources_pb2 as ocm
from cs3.tx.v1beta1 import resources_pb2 as cs3_tx
from cs3.tx.v1beta1 import tx_api_pb2 as tx
from cs3.types.v1beta1 import types_pb2 as cs3_types
from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from datatx.v1 import datatx_pb2 as pb
from tests.bridge.conftest import Bridge, invite_request, no_new_transfers, webdav_request

SECRET = "s3cr3t-value-that-must-not-leak"


def _options(**values: Any) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def _remote(**fields: Any) -> pb.Remote:
    base: dict[str, Any] = {
        "name": "src",
        "type": "webdav",
        "options": {"url": "https://s.example"},
    }
    return pb.Remote(**{**base, **fields})


DST = pb.Remote(name="dst", type="webdav", options={"url": "https://d.example"})

# (case id, the request, the field the error must name)
SEED_CASES: list[tuple[str, Callable[[], pb.DoTransferRequest], str]] = [
    ("src empty", lambda: webdav_request(src=""), "src"),
    ("src without remote", lambda: webdav_request(src="nocolon"), "src"),
    ("src with ..", lambda: webdav_request(src="src:a/../../etc"), "src"),
    ("src names unknown remote", lambda: webdav_request(src="zzz:data"), "src"),
    ("dest too short", lambda: webdav_request(dest="d:"), "dest"),
    ("dest too long", lambda: webdav_request(dest="dst:" + "a" * 5000), "dest"),
    ("no remotes", lambda: webdav_request(remotes=[]), "remotes"),
    (
        "nine remotes",
        lambda: webdav_request(remotes=[_remote(name=f"r{i}") for i in range(9)]),
        "remotes",
    ),
    (
        "remote name",
        lambda: webdav_request(remotes=[_remote(name="Bad Name"), DST]),
        "remotes[0].name",
    ),
    ("remote type", lambda: webdav_request(remotes=[_remote(type="ftp"), DST]), "remotes[0].type"),
    (
        "option key",
        lambda: webdav_request(remotes=[_remote(options={"Bad-Key": "x"}), DST]),
        "remotes[0].options.Bad-Key",
    ),
    (
        "option value too long",
        lambda: webdav_request(remotes=[_remote(options={"url": "x" * 3000}), DST]),
        "remotes[0].options.url",
    ),
    (
        "secret option with newline",
        lambda: webdav_request(remotes=[_remote(secret_options={"pass": SECRET + "\n"}), DST]),
        "remotes[0].secret_options.pass",
    ),
    (
        "option clear and secret",
        lambda: webdav_request(remotes=[_remote(secret_options={"url": SECRET}), DST]),
        "remotes[0].secret_options",
    ),
    (
        "nextcloud url without the user's files path",
        lambda: webdav_request(
            remotes=[
                _remote(
                    options={"url": "https://s.example/remote.php/webdav", "vendor": "nextcloud"}
                ),
                DST,
            ]
        ),
        "remotes[0]",
    ),
    ("duplicate remotes", lambda: webdav_request(remotes=[_remote(), _remote(), DST]), "remotes"),
    ("credential too long", lambda: webdav_request(credential=SECRET * 200), "credential"),
    ("credential control char", lambda: webdav_request(credential=SECRET + "\x07"), "credential"),
    ("no credential, no invitee", lambda: webdav_request(credential=""), "invitee"),
    (
        "invitee unreachable",
        lambda: invite_request(invitee=pb.Invitee(name="Dora")),
        "invitee",
    ),
    ("invitee email", lambda: invite_request(invitee=pb.Invitee(email="nope")), "invitee.email"),
    (
        "invitee webhook",
        lambda: invite_request(invitee=pb.Invitee(webhook_url="ftp://x")),
        "invitee.webhook_url",
    ),
    ("driver", lambda: webdav_request(driver="scp"), "driver"),
    ("fts without options", lambda: webdav_request(driver="fts"), "options"),
    (
        "rucio with webdav remotes",
        lambda: webdav_request(
            driver="rucio", options=_options(endpoint="https://r.example", account="root")
        ),
        "driver",
    ),
    (
        "rclone transfers",
        lambda: webdav_request(options=_options(transfers=0)),
        "options.transfers",
    ),
    ("unknown option", lambda: webdav_request(options=_options(bogus=1)), "options.bogus"),
    ("options too big", lambda: webdav_request(options=_options(x="y" * 20000)), "options"),
    ("request_id with space", lambda: webdav_request(request_id="a b"), "request_id"),
    ("request_id too long", lambda: webdav_request(request_id="a" * 129), "request_id"),
    ("retries", lambda: webdav_request(retries=11), "retries"),
    ("timeout", lambda: webdav_request(timeout_seconds=5), "timeout_seconds"),
]


def _message(bridge: Bridge, call: Callable[..., Any], request: Any) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=bridge.auth("alice"), timeout=10)
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    return str(error.details())


def test_do_transfer_names_each_bad_field(shared_bridge: Bridge) -> None:
    stub = shared_bridge.seed()
    with no_new_transfers(shared_bridge):
        for case, make, field in SEED_CASES:
            request = make()
            message = _message(shared_bridge, stub.DoTransfer, request)
            assert message.startswith(f"{field}: "), f"{case}: {message}"
            assert SECRET not in message, case
            for remote in request.remotes:
                for value in remote.secret_options.values():
                    assert value not in message, case
            if request.credential:
                assert request.credential not in message, case


def _cs3(src: str, dest: str, **opaque: str | tuple[str, bytes]) -> tx.CreateTransferRequest:
    request = tx.CreateTransferRequest(src_target_uri=src, dest_target_uri=dest)
    for key, value in opaque.items():
        decoder, data = value if isinstance(value, tuple) else ("plain", value.encode())
        request.opaque.map[key].CopyFrom(cs3_types.OpaqueEntry(decoder=decoder, value=data))
    return request


GOOD_SRC = f"davs://{SECRET}@source.example.org/remote.php/dav/ocm?name=/data"
GOOD_DEST = f"davs://{SECRET}@dest.example.org/remote.php/dav?name=/in"

CS3_CASES: list[tuple[str, tx.CreateTransferRequest, str]] = [
    ("src empty", _cs3("", GOOD_DEST), "src_target_uri"),
    ("src scheme", _cs3(f"ftp://{SECRET}@host/x", GOOD_DEST), "src_target_uri"),
    ("src without host", _cs3(f"davs://{SECRET}@/x", GOOD_DEST), "src_target_uri"),
    ("src with bad port", _cs3(f"davs://{SECRET}@host:99999/x", GOOD_DEST), "src_target_uri"),
    ("src name twice", _cs3(GOOD_SRC + "&name=/b", GOOD_DEST), "src_target_uri"),
    ("src with ..", _cs3(f"davs://{SECRET}@host/p?name=/a/../../b", GOOD_DEST), "src_target_uri"),
    ("src with space", _cs3(f"davs://{SECRET}@host/a b", GOOD_DEST), "src_target_uri"),
    ("src too long", _cs3(GOOD_SRC + "x" * 5000, GOOD_DEST), "src_target_uri"),
    ("dest empty", _cs3(GOOD_SRC, ""), "dest_target_uri"),
    (
        "dest without token or invitee",
        _cs3(GOOD_SRC, "davs://dest.example.org/in"),
        "dest_target_uri",
    ),
    (
        "invitee email",
        _cs3(GOOD_SRC, "davs://dest.example.org/in", invitee_email="nope"),
        "opaque.invitee_email",
    ),
    (
        "invitee decoder",
        _cs3(GOOD_SRC, "davs://dest.example.org/in", invitee_email=("json", b'"a@b"')),
        "opaque.invitee_email",
    ),
    ("request_id", _cs3(GOOD_SRC, GOOD_DEST, request_id="a b"), "opaque.request_id"),
]


def test_create_transfer_names_each_bad_field(shared_bridge: Bridge) -> None:
    stub = shared_bridge.cs3()
    with no_new_transfers(shared_bridge):
        for case, request, field in CS3_CASES:
            reply = stub.CreateTransfer(request, metadata=shared_bridge.auth("alice"), timeout=10)
            assert reply.status.code == code_pb2.CODE_INVALID_ARGUMENT, f"{case}: {reply.status}"
            assert reply.status.message.startswith(f"{field}: "), f"{case}: {reply.status.message}"
            assert SECRET not in reply.status.message, case
            assert not reply.HasField("tx_info"), case
        long_share = _cs3(GOOD_SRC, GOOD_DEST)
        long_share.share_id.CopyFrom(ocm.ShareId(opaque_id="x" * 300))
        reply = stub.CreateTransfer(long_share, metadata=shared_bridge.auth("alice"), timeout=10)
        assert reply.status.code == code_pb2.CODE_INVALID_ARGUMENT
        assert reply.status.message.startswith("share_id.opaque_id: ")


def test_reads_name_bad_fields(shared_bridge: Bridge) -> None:
    seed, cs3 = shared_bridge.seed(), shared_bridge.cs3()
    for transfer_id in ("", "UPPER", "a" * 49, "dt_x", "-dt"):
        message = _message(
            shared_bridge, seed.GetStatus, pb.GetStatusRequest(transfer_id=transfer_id)
        )
        assert message.startswith("transfer_id: ")
        message = _message(
            shared_bridge, seed.DestroyTransfer, pb.DestroyTransferRequest(transfer_id=transfer_id)
        )
        assert message.startswith("transfer_id: ")
    for request, field in (
        (pb.ListTransfersRequest(page_size=5000), "page_size"),
        (pb.ListTransfersRequest(statuses=[99]), "statuses[0]"),  # type: ignore[list-item]
        (pb.ListTransfersRequest(statuses=[pb.STATUS_UNSPECIFIED]), "statuses[0]"),
        (pb.ListTransfersRequest(drivers=["rclone", "scp"]), "drivers[1]"),
        (pb.ListTransfersRequest(page_token="garbage!"), "page_token"),
        (pb.ListTransfersRequest(created_after=Timestamp(seconds=-5)), "created_after"),
    ):
        assert _message(shared_bridge, seed.ListTransfers, request).startswith(f"{field}: ")
    auth = shared_bridge.auth("alice")
    reply = cs3.GetTransferStatus(tx.GetTransferStatusRequest(), metadata=auth, timeout=10)
    assert (reply.status.code, reply.status.message) == (
        code_pb2.CODE_INVALID_ARGUMENT,
        "tx_id: required",
    )
    filters = tx.ListTransfersRequest(
        filters=[tx.ListTransfersRequest.Filter(type=tx.ListTransfersRequest.Filter.TYPE_INVALID)]
    )
    reply = cs3.ListTransfers(filters, metadata=auth, timeout=10)
    assert reply.status.code == code_pb2.CODE_INVALID_ARGUMENT
    assert reply.status.message.startswith("filters[0].type: ")
    mismatch = tx.ListTransfersRequest(
        filters=[
            tx.ListTransfersRequest.Filter(
                type=tx.ListTransfersRequest.Filter.TYPE_TX_ID,
                status=cs3_tx.STATUS_TRANSFER_COMPLETE,
            )
        ]
    )
    reply = cs3.ListTransfers(mismatch, metadata=auth, timeout=10)
    assert reply.status.code == code_pb2.CODE_INVALID_ARGUMENT
    assert reply.status.message.startswith("filters[0]: ")


def test_oversized_messages_are_refused(shared_bridge: Bridge) -> None:
    """Bounded sizes: a request beyond the server's limit never reaches the handler."""
    request = webdav_request(src="src:" + "a" * 300_000)
    with no_new_transfers(shared_bridge), pytest.raises(grpc.RpcError) as caught:
        shared_bridge.seed().DoTransfer(request, metadata=shared_bridge.auth("alice"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]


def test_oversized_metadata_is_refused(shared_bridge: Bridge) -> None:
    """Metadata is bounded at 16 KiB: beyond it a call is refused as too large (never
    INTERNAL) and creates nothing; below it the same call works."""
    alice = shared_bridge.auth("alice")
    seed, cs3 = shared_bridge.seed(), shared_bridge.cs3()
    cs3_request = tx.CreateTransferRequest(
        src_target_uri="davs://tok@src.example.org/dav?name=/a",
        dest_target_uri="davs://tok@dst.example.org/dav?name=/b",
    )
    too_big = [*alice, ("x-padding", "p" * 17 * 1024)]
    with no_new_transfers(shared_bridge):
        for call, request in (
            (seed.DoTransfer, webdav_request()),
            (cs3.CreateTransfer, cs3_request),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                call(request, metadata=too_big, timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    fits = [*alice, ("x-padding", "p" * 8 * 1024)]
    assert seed.DoTransfer(webdav_request(), metadata=fits, timeout=10).transfer_id
