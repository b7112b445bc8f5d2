"""Invite answers, over gRPC and over the HTTP link of the invite e-mail.

The test plays the operator's part of an invite (storing the token's hash and deadline
in the status); the bridge checks the token, the deadline and single use, stores the
credential in the transfer's Secret and records the answer in the spec.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from datatx.v1 import datatx_pb2 as pb
from datatx_operator import api
from grpc_bridge import transfers as transfers_module
from grpc_bridge.errors import PermissionDeniedError
from grpc_bridge.server import Bridge as InProcessBridge
from grpc_bridge.settings import BridgeSettings
from tests.bridge.conftest import Bridge, invite_request, webdav_request
from tests.servers.datatx import Namespace


def _invited(bridge: Bridge, **kwargs: float) -> tuple[str, str]:
    reply = bridge.seed().DoTransfer(invite_request(), metadata=bridge.auth("alice"), timeout=10)
    return reply.transfer_id, bridge.open_invite(reply.transfer_id, **kwargs)


def _code(call: object, request: object) -> grpc.StatusCode:
    try:
        call(request, timeout=10)  # type: ignore[operator]
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        return code
    return grpc.StatusCode.OK


def _answer(bridge: Bridge, name: str) -> str | None:
    invite = bridge.transfer(name)["spec"]["invite"]
    return invite.get("response")  # type: ignore[no-any-return]


def test_accept_over_grpc_is_single_use(shared_bridge: Bridge) -> None:
    seed = shared_bridge.seed()
    name, token = _invited(shared_bridge)
    credential = "invitee-bearer-token-Qx9"
    wrong = pb.AcceptInviteRequest(
        transfer_id=name, invite_token=token + "x", credential=credential
    )
    assert _code(seed.AcceptInvite, wrong) == grpc.StatusCode.PERMISSION_DENIED
    assert shared_bridge.secret_data(api.credential_secret_name(name)) is None

    # No login needed: the invite token is the proof.
    right = pb.AcceptInviteRequest(transfer_id=name, invite_token=token, credential=credential)
    reply = seed.AcceptInvite(right, timeout=10)
    assert reply.text.startswith("accepted")
    assert shared_bridge.secret_data(api.credential_secret_name(name)) == {"credential": credential}
    spec = shared_bridge.transfer(name)["spec"]
    assert spec["invite"]["response"] == "Accepted"
    assert spec["credentialsRef"]["credential"] == api.credential_secret_name(name)
    assert credential not in json.dumps(shared_bridge.transfer(name))

    again = pb.AcceptInviteRequest(transfer_id=name, invite_token=token, credential="other")
    assert _code(seed.AcceptInvite, again) == grpc.StatusCode.FAILED_PRECONDITION
    decline = pb.DeclineInviteRequest(transfer_id=name, invite_token=token)
    assert _code(seed.DeclineInvite, decline) == grpc.StatusCode.FAILED_PRECONDITION
    assert shared_bridge.secret_data(api.credential_secret_name(name)) == {"credential": credential}
    assert credential not in shared_bridge.logs()


def test_decline_over_grpc(shared_bridge: Bridge) -> None:
    seed = shared_bridge.seed()
    name, token = _invited(shared_bridge)
    reply = seed.DeclineInvite(
        pb.DeclineInviteRequest(transfer_id=name, invite_token=token), timeout=10
    )
    assert "declined" in reply.text
    assert _answer(shared_bridge, name) == "Declined"
    again = pb.DeclineInviteRequest(transfer_id=name, invite_token=token)
    assert _code(seed.DeclineInvite, again) == grpc.StatusCode.FAILED_PRECONDITION
    accept = pb.AcceptInviteRequest(transfer_id=name, invite_token=token, credential="c")
    assert _code(seed.AcceptInvite, accept) == grpc.StatusCode.FAILED_PRECONDITION
    assert shared_bridge.secret_data(api.credential_secret_name(name)) is None


def test_expired_or_absent_invites_are_refused(shared_bridge: Bridge) -> None:
    seed = shared_bridge.seed()
    name, token = _invited(shared_bridge, deadline_in=-5)
    accept = pb.AcceptInviteRequest(transfer_id=name, invite_token=token, credential="c")
    with pytest.raises(grpc.RpcError) as caught:
        seed.AcceptInvite(accept, timeout=10)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "expired" in caught.value.details()  # type: ignore[attr-defined]
    assert shared_bridge.secret_data(api.credential_secret_name(name)) is None
    assert _answer(shared_bridge, name) is None

    # A transfer that has no invite, or does not exist: the same refusal as a bad token.
    with_credential = seed.DoTransfer(
        webdav_request(), metadata=shared_bridge.auth("alice")
    ).transfer_id
    for transfer_id in (with_credential, "dt-000000000001"):
        request = pb.DeclineInviteRequest(transfer_id=transfer_id, invite_token=token)
        assert _code(seed.DeclineInvite, request) == grpc.StatusCode.PERMISSION_DENIED
    for bad in ("", "x" * 300, "tok en"):
        request = pb.DeclineInviteRequest(transfer_id=name, invite_token=bad)
        assert _code(seed.DeclineInvite, request) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def http(shared_bridge: Bridge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_bridge.http(""), timeout=10) as client:
        yield client


def test_decline_over_http(shared_bridge: Bridge, http: httpx.Client) -> None:
    name, token = _invited(shared_bridge)
    page = http.get(f"/invites/{name}", params={"token": token})
    assert page.status_code == 200
    assert "src:data/in" in page.text
    assert "dst:data/out" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert _answer(shared_bridge, name) is None  # looking at the form answers nothing
    assert http.get(f"/invites/{name}", params={"token": "wrong"}).status_code == 403

    assert (
        http.post(f"/invites/{name}", data={"token": token, "action": "maybe"}).status_code == 400
    )
    declined = http.post(f"/invites/{name}", data={"token": token, "action": "decline"})
    assert declined.status_code == 200
    assert "declined" in declined.text
    assert _answer(shared_bridge, name) == "Declined"
    assert (
        http.post(f"/invites/{name}", data={"token": token, "action": "decline"}).status_code == 409
    )
    assert http.get(f"/invites/{name}", params={"token": token}).status_code == 409
    assert token not in shared_bridge.logs()


def test_accept_over_http(shared_bridge: Bridge, http: httpx.Client) -> None:
    name, token = _invited(shared_bridge)
    credential = "webdav-user:webdav-pass-Lm3"
    form = {"token": token, "action": "accept", "credential": credential}
    accepted = http.post(f"/invites/{name}", data=form)
    assert accepted.status_code == 200
    assert "accepted" in accepted.text
    assert shared_bridge.secret_data(api.credential_secret_name(name)) == {"credential": credential}
    assert _answer(shared_bridge, name) == "Accepted"
    assert http.post(f"/invites/{name}", data=form).status_code == 409
    assert credential not in shared_bridge.logs()
    assert token not in shared_bridge.logs()
    empty = {"token": token, "action": "accept", "credential": ""}
    other, other_token = _invited(shared_bridge)
    assert http.post(f"/invites/{other}", data={**empty, "token": other_token}).status_code == 400


def test_expired_invite_over_http(shared_bridge: Bridge, http: httpx.Client) -> None:
    """A link followed after the deadline: 409 (not the form), whatever the answer."""
    name, token = _invited(shared_bridge, deadline_in=-5)
    page = http.get(f"/invites/{name}", params={"token": token})
    assert (page.status_code, "expired" in page.text) == (409, True)
    assert "<form" not in page.text
    for form in (
        {"token": token, "action": "accept", "credential": "late-credential-Pt4"},
        {"token": token, "action": "decline"},
    ):
        refused = http.post(f"/invites/{name}", data=form)
        assert (refused.status_code, "expired" in refused.text) == (409, True)
    assert shared_bridge.secret_data(api.credential_secret_name(name)) is None
    assert _answer(shared_bridge, name) is None


async def test_tokens_are_compared_in_constant_time(
    datatx_namespace: Namespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every token check, whether the transfer exists, has an invite or matches, goes
    through hmac.compare_digest on equal-length digests, so its time reveals nothing."""
    compared: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(transfers_module.hmac, "compare_digest", spy)
    settings = BridgeSettings(
        namespace=datatx_namespace.name,
        kubeconfig=datatx_namespace.kubeconfig_for("bridge", tmp_path),
        listen="127.0.0.1:0",
        http_listen=None,
        metrics_listen=None,
    )
    bridge = InProcessBridge(settings)
    await bridge.start()
    try:
        await bridge.wait_ready()
        token = "a-token-of-the-operator"
        digest = hashlib.sha256(token.encode()).hexdigest()
        obj = {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": "dt-0123456789ab", "uid": "u", "resourceVersion": "1"},
            "spec": {"requester": {"user": "alice"}, "invite": {"invitee": {"email": "d@x.org"}}},
            "status": {"phase": "WaitingForInviteAcceptance", "invite": {"tokenSha256": digest}},
        }
        bridge.cache.put(obj)
        assert (
            await bridge.transfers.open_invite("dt-0123456789ab", token)
        ).name == "dt-0123456789ab"
        for name, presented in (("dt-0123456789ab", "wrong"), ("dt-ffffffffffff", token)):
            with pytest.raises(PermissionDeniedError):
                await bridge.transfers.open_invite(name, presented)
    finally:
        await bridge.stop(grace=0)
    assert len(compared) == 3
    assert all(len(a) == len(b) == 64 for a, b in compared)
