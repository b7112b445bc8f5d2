"""Both APIs end to end, with the real operator: real rclone Jobs move real bytes between
real storage servers; clients see it all through the bridge only.

The bridge runs first (the operator's invite links point at its HTTP endpoint), both as
their own ServiceAccounts in a fresh namespace.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from cs3.rpc.v1beta1 import code_pb2
from cs3.tx.v1beta1 import resources_pb2 as cs3_tx
from cs3.tx.v1beta1 import tx_api_pb2 as tx
from google.protobuf import struct_pb2

from datatx.v1 import datatx_pb2 as pb
from tests.bridge.conftest import Bridge, Launcher, eventually
from tests.servers.datatx import Namespace, OperatorFactory
from tests.servers.notify import Mailbox
from tests.servers.storage import StorageServer

TERMINAL = {
    pb.FINISHED,
    pb.FAILED,
    pb.CANCELLED,
    pb.INVITE_DECLINED,
    pb.INVITE_NOT_ACCEPTED_ON_TIME,
}


def _digests(tree: dict[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(data).hexdigest() for path, data in tree.items()}


def _remote(name: str, server: StorageServer, *, with_secrets: bool) -> pb.Remote:
    return pb.Remote(
        name=name,
        type=server.kind,
        options=server.options,
        secret_options=server.secret_options if with_secrets else {},
    )


def _request(
    source: StorageServer, src: str, destination: StorageServer, dest: str, **fields: Any
) -> pb.DoTransferRequest:
    return pb.DoTransferRequest(
        src=f"src:{src}",
        dest=f"dst:{dest}",
        remotes=[
            _remote("src", source, with_secrets=True),
            _remote("dst", destination, with_secrets=False),
        ],
        **fields,
    )


def _slow(rate: str) -> struct_pb2.Struct:
    options = struct_pb2.Struct()
    options.update({"bandwidthLimit": rate})
    return options


def _started(
    start_bridge: Launcher, namespace: Namespace, run_operator: OperatorFactory, **operator: str
) -> Bridge:
    bridge = start_bridge(namespace)
    run_operator(namespace, DATATX_INVITE_BASE_URL=bridge.http(""), **operator)
    return bridge


def _cs3_status(bridge: Bridge, name: str, user: str = "alice") -> Any:
    return bridge.cs3().GetTransferStatus(
        tx.GetTransferStatusRequest(tx_id=cs3_tx.TxId(opaque_id=name)), metadata=bridge.auth(user)
    )


def _until(check: Callable[[], Any], timeout: float = 180) -> Any:
    return eventually(check, timeout=timeout, interval=0.5)


def test_seed_api_transfer_finishes_with_real_bytes(
    datatx_namespace: Namespace,
    start_bridge: Launcher,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    sent = {
        "a.txt": b"alpha\n",
        "sub/b.bin": os.urandom(300_000),
        "sub/c/d.bin": os.urandom(1_500_000),
    }
    for path, data in sent.items():
        webdav_server.write(f"project/{path}", data)
    bridge = _started(start_bridge, datatx_namespace, run_operator)
    alice, seed = bridge.auth("alice"), bridge.seed()
    request = _request(
        webdav_server, "/project", s3_server, "/bucket/copy", credential=s3_server.credential
    )
    name = seed.DoTransfer(request, metadata=alice, timeout=10).transfer_id

    watched = list(
        seed.WatchTransfer(pb.WatchTransferRequest(transfer_id=name), metadata=alice, timeout=240)
    )

    assert watched[-1].status == pb.FINISHED, watched[-1]
    assert watched[0].status in (pb.PENDING, pb.IN_PROGRESS)
    assert _digests(s3_server.tree("bucket/copy")) == _digests(sent)
    status = seed.GetStatus(pb.GetStatusRequest(transfer_id=name), metadata=alice)
    assert status.status == pb.FINISHED
    assert status.progress.percent == 100
    assert status.progress.bytes == sum(len(data) for data in sent.values())
    assert status.text == f"finished: 3 files, {1.7:.1f} MiB"
    assert status.transfer.attempts == 1
    cs3 = _cs3_status(bridge, name)
    assert cs3.tx_info.status == cs3_tx.STATUS_TRANSFER_COMPLETE
    assert cs3.tx_info.description == status.text
    finished = seed.ListTransfers(pb.ListTransfersRequest(statuses=[pb.FINISHED]), metadata=alice)
    assert [t.transfer_id for t in finished.transfers] == [name]
    logs = bridge.logs()
    for secret in (*webdav_server.secrets, *s3_server.secrets):
        assert secret not in logs


def test_cs3_api_transfer_with_reva_uris(
    datatx_namespace: Namespace,
    start_bridge: Launcher,
    run_operator: OperatorFactory,
    wsgidav_bearer_server: StorageServer,
    webdav_server: StorageServer,
) -> None:
    """reva's form: the source token and the destination user:password in the userinfo."""
    wsgidav_bearer_server.write("share/data/results.csv", b"x,y\n1,2\n")
    wsgidav_bearer_server.write("share/data/plot.png", os.urandom(50_000))
    bridge = _started(start_bridge, datatx_namespace, run_operator)
    token = wsgidav_bearer_server.secret_options["bearer_token"]
    user, password = webdav_server.credential.split(":", 1)
    request = tx.CreateTransferRequest(
        src_target_uri=f"dav://{token}@127.0.0.1:{wsgidav_bearer_server.port}/?name=/share/data",
        dest_target_uri=f"dav://{user}:{password}@127.0.0.1:{webdav_server.port}/?name=/incoming",
    )
    created = bridge.cs3().CreateTransfer(request, metadata=bridge.auth("alice"), timeout=10)
    assert created.status.code == code_pb2.CODE_OK, created.status
    name = created.tx_info.id.opaque_id

    done = _until(
        lambda: (
            (reply := _cs3_status(bridge, name)).tx_info.status
            in (cs3_tx.STATUS_TRANSFER_COMPLETE, cs3_tx.STATUS_TRANSFER_FAILED)
            and reply
        )
    )
    assert done.tx_info.status == cs3_tx.STATUS_TRANSFER_COMPLETE, done.tx_info.description
    assert webdav_server.read("incoming/results.csv") == b"x,y\n1,2\n"
    assert webdav_server.read("incoming/plot.png") == wsgidav_bearer_server.read(
        "share/data/plot.png"
    )
    assert done.tx_info.description.startswith("finished: 2 files")
    listed = bridge.cs3().ListTransfers(
        tx.ListTransfersRequest(
            filters=[
                tx.ListTransfersRequest.Filter(
                    type=tx.ListTransfersRequest.Filter.TYPE_STATUS,
                    status=cs3_tx.STATUS_TRANSFER_COMPLETE,
                )
            ]
        ),
        metadata=bridge.auth("alice"),
    )
    assert [t.id.opaque_id for t in listed.transfers] == [name]
    for secret in (token, password):
        assert secret not in bridge.logs()
        assert secret not in str(bridge.transfer(name))


def test_destroy_cancel_and_retry_of_running_transfers(
    datatx_namespace: Namespace,
    start_bridge: Launcher,
    run_operator: OperatorFactory,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    blob = os.urandom(6 * 1024 * 1024)
    webdav_server.write("big/blob.bin", blob)
    bridge = _started(start_bridge, datatx_namespace, run_operator)
    alice, seed = bridge.auth("alice"), bridge.seed()

    def running(dest: str) -> str:
        request = _request(
            webdav_server,
            "/big",
            s3_server,
            dest,
            credential=s3_server.credential,
            options=_slow("512K"),
        )
        name = seed.DoTransfer(request, metadata=alice, timeout=10).transfer_id
        _until(
            lambda: (
                seed.GetStatus(pb.GetStatusRequest(transfer_id=name), metadata=alice).progress.bytes
                > 0
            )
        )
        return str(name)

    destroyed = running("/bucket/destroyed")
    reply = seed.DestroyTransfer(
        pb.DestroyTransferRequest(transfer_id=destroyed), metadata=alice, timeout=120
    )
    assert reply.result == pb.OK, reply.text
    assert (
        seed.GetStatus(pb.GetStatusRequest(transfer_id=destroyed), metadata=alice).status
        == pb.CANCELLED
    )
    assert not datatx_namespace.exists("secret", f"{destroyed}-credential")
    assert not datatx_namespace.exists("job", f"{destroyed}-run0")

    cancelled = running("/bucket/retried")
    cancel = bridge.cs3().CancelTransfer(
        tx.CancelTransferRequest(tx_id=cs3_tx.TxId(opaque_id=cancelled)),
        metadata=alice,
        timeout=120,
    )
    assert cancel.status.code == code_pb2.CODE_OK, cancel.status
    assert cancel.tx_info.status == cs3_tx.STATUS_TRANSFER_CANCELLED
    assert datatx_namespace.exists("secret", f"{cancelled}-credential"), "kept for a retry"
    retry = bridge.cs3().RetryTransfer(
        tx.RetryTransferRequest(tx_id=cs3_tx.TxId(opaque_id=cancelled)), metadata=alice
    )
    assert retry.status.code == code_pb2.CODE_OK, retry.status
    done = _until(
        lambda: (
            (r := _cs3_status(bridge, cancelled)).tx_info.status
            in (cs3_tx.STATUS_TRANSFER_COMPLETE, cs3_tx.STATUS_TRANSFER_FAILED)
            and r
        ),
        timeout=240,
    )
    assert done.tx_info.status == cs3_tx.STATUS_TRANSFER_COMPLETE, done.tx_info.description
    assert s3_server.read("bucket/retried/blob.bin") == blob
    assert (
        seed.GetStatus(pb.GetStatusRequest(transfer_id=cancelled), metadata=alice).transfer.restarts
        == 1
    )


def _invite_link(mail_text: str, bridge: Bridge) -> tuple[str, str]:
    link = re.search(re.escape(bridge.http("/invites/")) + r"\S+", mail_text)
    assert link, mail_text
    url = urlparse(link.group(0))
    return url.path, parse_qs(url.query)["token"][0]


def test_invites_accepted_over_http_and_declined_over_grpc(
    datatx_namespace: Namespace,
    start_bridge: Launcher,
    run_operator: OperatorFactory,
    smtp_server: Mailbox,
    webdav_server: StorageServer,
    s3_server: StorageServer,
) -> None:
    webdav_server.write("shared/paper.pdf", b"%PDF-1.7 results")
    bridge = _started(
        start_bridge,
        datatx_namespace,
        run_operator,
        DATATX_SMTP_HOST=smtp_server.host,
        DATATX_SMTP_PORT=str(smtp_server.port),
        DATATX_SMTP_STARTTLS="false",
    )
    alice, seed = bridge.auth("alice"), bridge.seed()
    invitee = pb.Invitee(name="Bob", email="bob@dest.example")
    accepted = seed.DoTransfer(
        _request(webdav_server, "/shared", s3_server, "/bucket/in", invitee=invitee), metadata=alice
    ).transfer_id
    _until(
        lambda: (
            seed.GetStatus(pb.GetStatusRequest(transfer_id=accepted), metadata=alice).status
            == pb.WAITING_FOR_INVITE_ACCEPTANCE
        )
    )
    assert (
        _cs3_status(bridge, accepted).tx_info.status == cs3_tx.STATUS_TRANSFER_AWAITING_ACCEPTANCE
    )
    path, token = _invite_link(smtp_server.next().get_content(), bridge)
    assert path == f"/invites/{accepted}"

    with httpx.Client(base_url=bridge.http(""), timeout=10) as http:
        form = http.get(path, params={"token": token})
        assert form.status_code == 200
        answer = http.post(
            path, data={"token": token, "action": "accept", "credential": s3_server.credential}
        )
        assert answer.status_code == 200, answer.text
        assert http.post(path, data={"token": token, "action": "decline"}).status_code in (403, 409)

    watched = list(
        seed.WatchTransfer(
            pb.WatchTransferRequest(transfer_id=accepted), metadata=alice, timeout=240
        )
    )
    assert watched[-1].status == pb.FINISHED, watched[-1]
    assert s3_server.read("bucket/in/paper.pdf") == b"%PDF-1.7 results"

    declined = seed.DoTransfer(
        _request(webdav_server, "/shared", s3_server, "/bucket/no", invitee=invitee), metadata=alice
    ).transfer_id
    _, token = _invite_link(smtp_server.next().get_content(), bridge)
    seed.DeclineInvite(
        pb.DeclineInviteRequest(transfer_id=declined, invite_token=token), timeout=10
    )
    final = _until(
        lambda: (
            (s := seed.GetStatus(pb.GetStatusRequest(transfer_id=declined), metadata=alice)).status
            in TERMINAL
            and s
        )
    )
    assert final.status == pb.INVITE_DECLINED
    assert _cs3_status(bridge, declined).tx_info.status == cs3_tx.STATUS_TRANSFER_CANCELLED
    assert "declined" in _cs3_status(bridge, declined).tx_info.description
    assert not s3_server.path("bucket/no").exists()
    assert token not in bridge.logs()
    assert s3_server.credential not in bridge.logs()
