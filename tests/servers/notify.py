"""Real receivers for invites: an SMTP server (aiosmtpd) and an HTTP webhook endpoint."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.servers.ports import free_port


@dataclass
class Mailbox:
    """Messages the SMTP server accepted, in arrival order."""

    host: str
    port: int
    messages: queue.Queue[EmailMessage] = field(default_factory=queue.Queue)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        assert isinstance(envelope.content, bytes)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.put(message)
        return "250 Message accepted for delivery"

    def next(self, timeout: float = 30) -> EmailMessage:
        return self.messages.get(timeout=timeout)


@dataclass
class WebhookCall:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Webhook:
    url: str
    calls: queue.Queue[WebhookCall] = field(default_factory=queue.Queue)
    status: int = 200

    def next(self, timeout: float = 30) -> WebhookCall:
        return self.calls.get(timeout=timeout)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Mailbox]:
    mailbox = Mailbox("127.0.0.1", free_port())
    controller = Controller(mailbox, hostname=mailbox.host, port=mailbox.port)
    controller.start()
    yield mailbox
    controller.stop()


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[Webhook]:
    webhook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            webhook.calls.put(WebhookCall(dict(self.headers), self.rfile.read(length)))
            self.send_response(webhook.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    webhook.url = f"http://127.0.0.1:{server.server_address[1]}/invites"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield webhook
    server.shutdown()
    server.server_close()
