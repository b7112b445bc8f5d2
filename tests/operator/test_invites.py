"""Invites: sent by e-mail (a real SMTP server) and a signed webhook; accepted, declined,
or left to expire."""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import parse_qs, urlparse

from datatx_operator.models import Invitee
from tests.operator.observe import metric
from tests.operator.submit import accept, decline, submit
from tests.servers.datatx import Namespace, OperatorFactory, OperatorProcess
from tests.servers.notify import Mailbox, Webhook
from tests.servers.storage import StorageServer

SIGNING_KEY = "test-webhook-signing-key-0123456789"


def _operator(
    namespace: Namespace,
    run_operator: OperatorFactory,
    smtp: Mailbox,
    tmp_path_factory: object,
    **settings: str,
) -> OperatorProcess:
    key_file = namespace.cluster.workdir / f"{namespace.name}-webhook.key"
    key_file.write_text(SIGNING_KEY)
    return run_operator(
        namespace,
        DATATX_SMTP_HOST=smtp.host,
        DATATX_SMTP_PORT=str(smtp.port),
        DATATX_SMTP_STARTTLS="false",
        DATATX_SMTP_SENDER="datatx@site.example",
        DATATX_WEBHOOK_SIGNING_KEY_FILE=str(key_file),
        DATATX_INVITE_BASE_URL="https://datatx.site.example",
        **settings,
    )


def _token_from_mail(text: str) -> str:
    link = re.search(r"https://datatx\.site\.example/invites/\S+", text)
    assert link, text
    return parse_qs(urlparse(link.group(0)).query)["token"][0]


def test_accepted_invite_starts_the_transfer(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    smtp_server: Mailbox,
    webhook_receiver: Webhook,
    webdav_server: StorageServer,
    s3_server: StorageServer,
    tmp_path_factory: object,
) -> None:
    webdav_server.write("shared/paper.pdf", b"%PDF-1.7 results")
    operator = _operator(datatx_namespace, run_operator, smtp_server, tmp_path_factory)
    invitee = Invitee(name="Bob", email="bob@dest.example", webhook_url=webhook_receiver.url)
    name = submit(
        datatx_namespace,
        webdav_server,
        "/shared",
        s3_server,
        "/bucket/in",
        credential=False,
        invitee=invitee,
    )

    waiting = datatx_namespace.wait_for(
        name, lambda b: (b.get("status") or {}).get("reason") == "InviteSent"
    )
    mail = smtp_server.next()
    call = webhook_receiver.next()

    assert waiting["status"]["phase"] == "WaitingForInviteAcceptance"
    assert mail["To"] == "bob@dest.example"
    token = _token_from_mail(mail.get_content())
    stored = waiting["status"]["invite"]["tokenSha256"]
    assert hashlib.sha256(token.encode()).hexdigest() == stored
    assert token not in str(waiting), "only the hash is stored"
    assert len(token) >= 43, "256 random bits, URL-safe base64"
    payload = call.json()
    assert (payload["invite_token"], payload["transfer_id"]) == (token, name)
    timestamp, signature = (
        part.split("=", 1)[1] for part in call.headers["X-Datatx-Signature"].split(",")
    )
    expected = hmac.new(SIGNING_KEY.encode(), f"{timestamp}.".encode() + call.body, hashlib.sha256)
    assert hmac.compare_digest(signature, expected.hexdigest())
    assert sorted(waiting["status"]["invite"]["notified"]) == ["email", "webhook"]
    assert metric(operator, "datatx_invites_total", event="sent") == 1
    assert metric(operator, "datatx_invites_total", event="accepted") == 0

    accept(datatx_namespace, name, s3_server.credential)
    done = datatx_namespace.wait_phase(name, "Finished", "Failed", timeout=180)

    assert done["status"]["phase"] == "Finished", done["status"]
    assert s3_server.read("bucket/in/paper.pdf") == b"%PDF-1.7 results"
    assert "tokenSha256" not in done["status"]["invite"], "a used token is destroyed"
    conditions = {c["type"]: c["reason"] for c in done["status"]["conditions"]}
    assert conditions["Accepted"] == "InviteAccepted"
    assert metric(operator, "datatx_invites_total", event="accepted") == 1


def test_declined_invite_deletes_the_transfer(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    smtp_server: Mailbox,
    webdav_server: StorageServer,
    s3_server: StorageServer,
    tmp_path_factory: object,
) -> None:
    operator = _operator(datatx_namespace, run_operator, smtp_server, tmp_path_factory)
    name = submit(
        datatx_namespace,
        webdav_server,
        "/x",
        s3_server,
        "/bucket/x",
        credential=False,
        invitee=Invitee(email="carol@dest.example"),
    )
    datatx_namespace.wait_for(name, lambda b: (b.get("status") or {}).get("reason") == "InviteSent")
    smtp_server.next()
    assert metric(operator, "datatx_invites_total", event="declined") == 0

    decline(datatx_namespace, name)
    status = datatx_namespace.wait_phase(name, "InviteDeclined")["status"]

    assert "tokenSha256" not in status["invite"]
    assert status["cacheExpiry"]
    assert not datatx_namespace.exists("secret", f"{name}-remotes"), "credentials destroyed"
    reasons = [event["reason"] for event in datatx_namespace.events(name)]
    assert {"InviteSent", "InviteDeclined"} <= set(reasons)
    assert metric(operator, "datatx_invites_total", event="declined") == 1
    assert metric(operator, "datatx_invites_total", event="sent") == 1


def test_unanswered_invite_expires(
    datatx_namespace: Namespace,
    run_operator: OperatorFactory,
    smtp_server: Mailbox,
    webdav_server: StorageServer,
    s3_server: StorageServer,
    tmp_path_factory: object,
) -> None:
    operator = _operator(
        datatx_namespace,
        run_operator,
        smtp_server,
        tmp_path_factory,
        DATATX_INVITE_MAX_WAIT_SECONDS="4",
    )
    name = submit(
        datatx_namespace,
        webdav_server,
        "/x",
        s3_server,
        "/bucket/x",
        credential=False,
        invitee=Invitee(email="dave@dest.example"),
    )
    smtp_server.next()

    status = datatx_namespace.wait_phase(name, "InviteNotAcceptedOnTime", timeout=30)["status"]

    assert status["reason"] == "InviteExpired"
    assert "tokenSha256" not in status["invite"]
    assert not datatx_namespace.exists("secret", f"{name}-remotes")
    metrics = operator.metrics()
    assert 'datatx_invites_total{event="expired"} 1.0' in metrics
    assert 'datatx_transfers{phase="InviteNotAcceptedOnTime"} 1.0' in metrics
