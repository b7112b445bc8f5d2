"""Secrets never leave Secrets: not in the CR, events, logs, metrics, error texts, nor the
bridge's command line or environment. The test uses every way a secret enters the bridge
(credentials, secret remote options, CS3 URI tokens, invite tokens and answers, login
tokens) and then looks for each one everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
from cs3.tx.v1beta1 import tx_api_pb2 as tx

from datatx_operator import api
from tests.bridge.conftest import Bridge, invite_request, webdav_request


def test_secrets_stay_in_secrets(bridge: Bridge) -> None:
    seed, alice = bridge.seed(), bridge.auth("alice")
    used: list[str] = [bridge.tokens["alice"], bridge.jwt_secret]
    errors: list[str] = []

    request = webdav_request(request_id="secret-test")
    used += [request.credential, *request.remotes[0].secret_options.values()]
    name = seed.DoTransfer(request, metadata=alice).transfer_id
    jwt = bridge.reva_token("einstein")
    used.append(jwt)
    seed.DoTransfer(webdav_request(), metadata=[("x-access-token", jwt)])

    uri_token, uri_password = "uri-token-Hh28xx", "uri-password-Pp19xx"
    used += [uri_token, uri_password]
    reply = bridge.cs3().CreateTransfer(
        tx.CreateTransferRequest(
            src_target_uri=f"davs://{uri_token}@src.example.org/dav?name=/a",
            dest_target_uri=f"davs://someone:{uri_password}@dst.example.org/dav?name=/b",
        ),
        metadata=alice,
    )
    cs3_name = reply.tx_info.id.opaque_id

    # Bad requests that carry secrets: the errors must not echo them.
    bad = webdav_request(src="no-remote")
    used += [bad.credential, *bad.remotes[0].secret_options.values()]
    try:
        seed.DoTransfer(bad, metadata=alice)
    except grpc.RpcError as error:
        errors.append(str(error.details()))  # type: ignore[attr-defined]
    broken_uri = bridge.cs3().CreateTransfer(
        tx.CreateTransferRequest(
            src_target_uri=f"ftp://{uri_token}@src.example.org/x", dest_target_uri="davs://x@y/z"
        ),
        metadata=alice,
    )
    errors.append(broken_uri.status.message)

    invited = seed.DoTransfer(invite_request(), metadata=alice).transfer_id
    invite_token = bridge.open_invite(invited)
    invite_credential = "invitee-credential-Kk47xx"
    used += [invite_token, invite_credential]
    with httpx.Client(base_url=bridge.http(""), timeout=10) as http:
        http.get(f"/invites/{invited}", params={"token": invite_token})
        http.post(
            f"/invites/{invited}",
            data={"token": invite_token, "action": "accept", "credential": invite_credential},
        )
        errors.append(
            http.post(
                f"/invites/{invited}",
                data={"token": invite_token, "action": "accept", "credential": "x"},
            ).text
        )

    # The secrets did arrive where they belong.
    assert bridge.secret_data(api.credential_secret_name(name)) == {
        "credential": request.credential
    }
    assert bridge.secret_data(api.credential_secret_name(cs3_name)) == {
        "credential": f"someone:{uri_password}"
    }
    assert bridge.secret_data(api.credential_secret_name(invited)) == {
        "credential": invite_credential
    }

    places = {
        "transfers": json.dumps(bridge.transfers()),
        "events": bridge.kubectl("get", "events", "-o", "json").stdout,
        "bridge log": bridge.logs(),
        "metrics": bridge.metrics(),
        "error texts": "\n".join(errors),
    }
    assert bridge.process is not None
    proc = Path(f"/proc/{bridge.process.pid}")
    places["command line"] = (proc / "cmdline").read_bytes().decode(errors="replace")
    places["environment"] = (proc / "environ").read_bytes().decode(errors="replace")
    for secret in used:
        for place, content in places.items():
            assert secret not in content, f"a secret shows in the {place}"
