"""Fuzzing both APIs with hypothesis: more than 10,000 malformed or random requests.

Three kinds: random bytes as the request body of every method; requests with random
field values for every method; and create requests (DoTransfer, CreateTransfer) whose
random fields include at least one known-bad value, so none may succeed. Whatever comes
in, the bridge answers with a deliberate code (never INTERNAL or UNKNOWN), keeps running,
and creates no DataTransfer and no Secret.
"""

from __future__ import annotations

import re
from collections import Counter
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
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datatx.v1 import datatx_pb2 as pb
from tests.bridge.conftest import Bridge

EXAMPLES = 700
BATCH = 8
MIN_REQUESTS = 10_000
FORBIDDEN_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
FORBIDDEN_CS3 = {code_pb2.CODE_INTERNAL, code_pb2.CODE_UNKNOWN}
SEED = "/datatx.v1.DataTx/"
CS3 = "/cs3.tx.v1beta1.TxAPI/"
# method -> (request class, response class, server streaming)
METHODS: dict[str, tuple[type[Message], type[Message], bool]] = {
    SEED + "DoTransfer": (pb.DoTransferRequest, pb.DoTransferResponse, False),
    SEED + "GetStatus": (pb.GetStatusRequest, pb.GetStatusResponse, False),
    SEED + "DestroyTransfer": (pb.DestroyTransferRequest, pb.DestroyTransferResponse, False),
    SEED + "AcceptInvite": (pb.AcceptInviteRequest, pb.AcceptInviteResponse, False),
    SEED + "DeclineInvite": (pb.DeclineInviteRequest, pb.DeclineInviteResponse, False),
    SEED + "ListTransfers": (pb.ListTransfersRequest, pb.ListTransfersResponse, False),
    SEED + "WatchTransfer": (pb.WatchTransferRequest, pb.Transfer, True),
    CS3 + "CreateTransfer": (tx.CreateTransferRequest, tx.CreateTransferResponse, False),
    CS3 + "GetTransferStatus": (tx.GetTransferStatusRequest, tx.GetTransferStatusResponse, False),
    CS3 + "CancelTransfer": (tx.CancelTransferRequest, tx.CancelTransferResponse, False),
    CS3 + "RetryTransfer": (tx.RetryTransferRequest, tx.RetryTransferResponse, False),
    CS3 + "ListTransfers": (tx.ListTransfersRequest, tx.ListTransfersResponse, False),
}
CREATES = {SEED + "DoTransfer", CS3 + "CreateTransfer"}

sent: Counter[str] = Counter()


class Caller:
    """Sends serialized requests to any method and checks what comes back."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        channel = bridge.channel()
        self.unary = {
            m: channel.unary_unary(m) for m, (_, _, stream) in METHODS.items() if not stream
        }
        self.stream = {
            m: channel.unary_stream(m) for m, (_, _, stream) in METHODS.items() if stream
        }

    def __call__(self, method: str, body: bytes, metadata: list[tuple[str, str]]) -> None:
        sent[method.rsplit("/", 1)[0]] += 1
        _, response_type, streaming = METHODS[method]
        failure: Any = None
        try:
            if streaming:
                replies = list(self.stream[method](body, metadata=metadata, timeout=20))
            else:
                replies = [self.unary[method](body, metadata=metadata, timeout=20)]
        except grpc.RpcError as error:
            failure = error
        if failure is not None:
            code = failure.code()
            assert code not in FORBIDDEN_CODES, f"{method}: {code} {failure.details()}"
            assert not (method == SEED + "DoTransfer" and code == grpc.StatusCode.ALREADY_EXISTS)
            return
        assert method != SEED + "DoTransfer", f"DoTransfer accepted a bad request: {body!r}"
        for raw in replies:
            reply = response_type.FromString(raw)
            status = getattr(reply, "status", None)
            if method.startswith(CS3):
                assert status is not None
                assert status.code not in FORBIDDEN_CS3, f"{method}: {status}"
                if method in CREATES:
                    assert status.code != code_pb2.CODE_OK, f"CreateTransfer accepted {body!r}"


@pytest.fixture(scope="module")
def caller(shared_bridge: Bridge) -> Caller:
    return Caller(shared_bridge)


# -- strategies ----------------------------------------------------------------------

text = st.text(max_size=40)
short = st.text(max_size=12)
names = st.one_of(text, st.from_regex(r"\A[a-z][a-z0-9_-]{0,8}\Z"), st.sampled_from(["src", "dst"]))
ids = st.one_of(text, st.from_regex(r"\Adt-[0-9a-f]{12}\Z"), st.just(""))
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers(-(2**60), 2**60) | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(short, children, max_size=3),
    max_leaves=8,
)
string_maps = st.dictionaries(short, text, max_size=4)


@st.composite
def remotes(draw: st.DrawFn) -> pb.Remote:
    return pb.Remote(
        name=draw(names),
        type=draw(st.one_of(text, st.sampled_from(["webdav", "s3", "sftp", "local", "rucio"]))),
        options=draw(string_maps),
        secret_options=draw(string_maps),
    )


@st.composite
def do_transfers(draw: st.DrawFn) -> pb.DoTransferRequest:
    request = pb.DoTransferRequest(
        src=draw(st.one_of(text, st.builds("{}:{}".format, names, text))),
        dest=draw(st.one_of(text, st.builds("{}:{}".format, names, text))),
        remotes=draw(st.lists(remotes(), max_size=4)),
        credential=draw(text),
        driver=draw(st.one_of(text, st.sampled_from(["rclone", "fts", "rucio", "filesender"]))),
        request_id=draw(text),
    )
    if draw(st.booleans()):
        request.invitee.CopyFrom(
            pb.Invitee(name=draw(text), email=draw(text), webhook_url=draw(text))
        )
    if draw(st.booleans()):
        options = struct_pb2.Struct()
        options.update(draw(st.dictionaries(short, json_values, max_size=4)))
        request.options.CopyFrom(options)
    if draw(st.booleans()):
        request.retries = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        request.timeout_seconds = draw(st.integers(0, 2**32 - 1))
    return request


# Each makes a DoTransfer request invalid, whatever its other fields hold.
BREAK_DO_TRANSFER: list[Callable[[pb.DoTransferRequest], None]] = [
    lambda r: setattr(r, "src", "no-colon-here"),
    lambda r: setattr(r, "dest", "dst:a/../b"),
    lambda r: setattr(r, "src", "Upper:x"),
    lambda r: r.ClearField("remotes"),
    lambda r: r.remotes.extend(pb.Remote(name=f"r{i}", type="local") for i in range(9)),
    lambda r: r.remotes.add(name="Bad", type="local"),
    lambda r: r.remotes.add(name="x", type="gopher"),
    lambda r: setattr(r, "driver", "carrier-pigeon"),
    lambda r: setattr(r, "request_id", "has space"),
    lambda r: setattr(r, "retries", 11),
    lambda r: setattr(r, "timeout_seconds", 9),
    lambda r: setattr(r, "credential", "bad\ncredential"),
]

schemes = st.sampled_from(["davs", "dav", "https", "http", "ftp", "", "file", "DAVS"])
uris = st.one_of(
    text,
    st.builds(
        "{}://{}@{}/{}?name={}".format,
        schemes,
        short,
        st.one_of(short, st.just("host")),
        short,
        text,
    ),
)


@st.composite
def create_transfers(draw: st.DrawFn) -> tx.CreateTransferRequest:
    request = tx.CreateTransferRequest(src_target_uri=draw(uris), dest_target_uri=draw(uris))
    if draw(st.booleans()):
        request.share_id.CopyFrom(ocm.ShareId(opaque_id=draw(text)))
    for key in draw(
        st.lists(st.sampled_from(["request_id", "invitee_email", "x", "invitee_name"]), max_size=3)
    ):
        request.opaque.map[key].CopyFrom(
            cs3_types.OpaqueEntry(
                decoder=draw(st.sampled_from(["plain", "json", ""])),
                value=draw(st.binary(max_size=20)),
            )
        )
    return request


BREAK_CREATE: list[Callable[[tx.CreateTransferRequest], None]] = [
    lambda r: setattr(r, "src_target_uri", "ftp://tok@host/x"),
    lambda r: setattr(r, "dest_target_uri", "davs://tok@/no-host"),
    lambda r: setattr(r, "src_target_uri", "davs://tok@host/a b"),
    lambda r: setattr(r, "src_target_uri", "davs://tok@host/p?name=/a&name=/b"),
    lambda r: setattr(r, "dest_target_uri", "davs://tok@host/p?name=/a/../b"),
    lambda r: setattr(r, "src_target_uri", ""),
    lambda r: setattr(r, "dest_target_uri", "davs://tok@host/" + "x" * 5000),
]


@st.composite
def broken(draw: st.DrawFn, requests: Any, breakers: list[Callable[[Any], None]]) -> Any:
    request = draw(requests)
    for breaker in draw(st.lists(st.sampled_from(breakers), min_size=1, max_size=3)):
        breaker(request)
    return request


def _timestamps() -> Any:
    return st.builds(
        Timestamp, seconds=st.integers(-(2**62), 2**62), nanos=st.integers(-(2**31), 2**31 - 1)
    )


def _filters() -> Any:
    kinds = st.integers(-5, 10)
    return st.one_of(
        st.builds(
            tx.ListTransfersRequest.Filter, type=kinds, status=st.integers(-(2**31), 2**31 - 1)
        ),
        st.builds(
            tx.ListTransfersRequest.Filter, type=kinds, tx_id=st.builds(cs3_tx.TxId, opaque_id=ids)
        ),
        st.builds(
            tx.ListTransfersRequest.Filter,
            type=kinds,
            share_id=st.builds(ocm.ShareId, opaque_id=text),
        ),
        st.builds(tx.ListTransfersRequest.Filter, type=kinds),
    )


tx_ids = st.one_of(st.none(), st.builds(cs3_tx.TxId, opaque_id=ids))
OTHER_REQUESTS: dict[str, Any] = {
    SEED + "GetStatus": st.builds(pb.GetStatusRequest, transfer_id=ids),
    SEED + "DestroyTransfer": st.builds(pb.DestroyTransferRequest, transfer_id=ids),
    SEED + "AcceptInvite": st.builds(
        pb.AcceptInviteRequest, transfer_id=ids, invite_token=text, credential=text
    ),
    SEED + "DeclineInvite": st.builds(pb.DeclineInviteRequest, transfer_id=ids, invite_token=text),
    SEED + "WatchTransfer": st.builds(pb.WatchTransferRequest, transfer_id=ids),
    SEED + "ListTransfers": st.builds(
        pb.ListTransfersRequest,
        statuses=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=40),
        drivers=st.lists(text, max_size=3),
        created_after=st.one_of(st.none(), _timestamps()),
        created_before=st.one_of(st.none(), _timestamps()),
        owner=text,
        page_size=st.integers(0, 2**32 - 1),
        page_token=text,
    ),
    CS3 + "GetTransferStatus": st.builds(tx.GetTransferStatusRequest, tx_id=tx_ids),
    CS3 + "CancelTransfer": st.builds(tx.CancelTransferRequest, tx_id=tx_ids),
    CS3 + "RetryTransfer": st.builds(tx.RetryTransferRequest, tx_id=tx_ids),
    CS3 + "ListTransfers": st.builds(
        tx.ListTransfersRequest, filters=st.lists(_filters(), max_size=5)
    ),
}


def _calls(service: str) -> Any:
    """One (method, body) pair: random bytes, random fields, or a broken create."""
    methods = [m for m in METHODS if m.startswith(service)]
    raw = st.tuples(st.sampled_from(methods), st.binary(max_size=300))
    structured = st.one_of(
        [
            st.tuples(st.just(m), s.map(lambda r: r.SerializeToString()))
            for m, s in OTHER_REQUESTS.items()
            if m in methods
        ]
    )
    create = SEED + "DoTransfer" if service == SEED else CS3 + "CreateTransfer"
    creates = (
        broken(do_transfers(), BREAK_DO_TRANSFER)
        if service == SEED
        else broken(create_transfers(), BREAK_CREATE)
    )
    return st.one_of(
        raw, structured, st.tuples(st.just(create), creates.map(lambda r: r.SerializeToString()))
    )


def _metadata(bridge: Bridge) -> Any:
    good = bridge.auth("alice")
    garbage = st.builds(
        lambda k, v: [(k, v)],
        st.sampled_from(["authorization", "x-access-token"]),
        st.from_regex(r"\A[ -~]{0,60}\Z"),
    )
    return st.one_of(st.just(good), st.just(good), st.just(good), st.just([]), garbage)


def _fuzz(caller: Caller, service: str) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        batch=st.lists(
            st.tuples(_calls(service), _metadata(caller.bridge)), min_size=BATCH, max_size=BATCH
        )
    )
    def run(batch: list[tuple[tuple[str, bytes], list[tuple[str, str]]]]) -> None:
        for (method, body), metadata in batch:
            caller(method, body, metadata)

    run()


def test_fuzz_seed_api(caller: Caller) -> None:
    _fuzz(caller, SEED)


def test_fuzz_cs3_api(caller: Caller) -> None:
    _fuzz(caller, CS3)


def test_fuzzing_left_no_trace(shared_bridge: Bridge) -> None:
    """Runs after both fuzz tests (file order): count, state of the cluster and the bridge."""
    total = sum(sent.values())
    assert total >= MIN_REQUESTS, f"only {total} requests sent: {dict(sent)}"
    assert shared_bridge.transfers() == []
    secrets = shared_bridge.kubectl(
        "get", "secrets", "-l", "datatx.io/transfer", "-o", "name"
    ).stdout
    assert secrets.strip() == ""
    assert shared_bridge.serving()
    assert shared_bridge.process is not None
    assert shared_bridge.process.poll() is None
    assert "Traceback" not in shared_bridge.logs()
    outcomes = re.findall(
        r'datatx_bridge_grpc_calls_total\{code="([A-Z_]+)",method="([^"]+)"\}',
        shared_bridge.metrics(),
    )
    assert outcomes
    bad = {
        (code, method)
        for code, method in outcomes
        if code in {"INTERNAL", "UNKNOWN", "CODE_INTERNAL", "CODE_UNKNOWN"}
    }
    assert not bad
    print(f"fuzz: {total} requests, {dict(sent)}")
