"""Deliver invites: a signed webhook and/or an e-mail over SMTP.

The webhook body is JSON signed with HMAC-SHA256 over `<timestamp>.<body>`, so that the
receiver can check origin and freshness (header `X-Datatx-Signature: t=<ts>,v1=<hex>`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import httpx

from datatx_operator.invites import Invitation
from datatx_operator.settings import SmtpSettings, WebhookSettings, read_secret_file

SIGNATURE_HEADER = "X-Datatx-Signature"


class DeliveryError(Exception):
    """An invite could not be delivered through one channel (message holds no secret)."""


class Notifier(Protocol):
    channel: str

    def applies_to(self, invitation: Invitation) -> bool: ...

    async def send(self, invitation: Invitation) -> None: ...


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookNotifier:
    channel = "webhook"

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        key = read_secret_file(settings.signing_key_file)
        self._key = key.get_secret_value().encode() if key else None

    def _url(self, invitation: Invitation) -> str | None:
        invite = invitation.spec.invite
        return (invite.invitee.webhook_url if invite else None) or self.settings.url

    def applies_to(self, invitation: Invitation) -> bool:
        return self._url(invitation) is not None

    async def send(self, invitation: Invitation) -> None:
        url = self._url(invitation)
        assert url is not None
        body = json.dumps(invitation.payload(), sort_keys=True).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers[SIGNATURE_HEADER] = sign(self._key, int(time.time()), body)
        try:
            async with httpx.AsyncClient(timeout=self.settings.timeout_seconds) as http:
                response = await http.post(url, content=body, headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryError(f"webhook unreachable: {type(error).__name__}") from None
        if response.status_code >= 300:
            raise DeliveryError(f"webhook answered HTTP {response.status_code}")


class EmailNotifier:
    channel = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._password = read_secret_file(settings.password_file)

    def applies_to(self, invitation: Invitation) -> bool:
        invite = invitation.spec.invite
        return bool(self.settings.host and invite and invite.invitee.email)

    async def send(self, invitation: Invitation) -> None:
        invite = invitation.spec.invite
        assert invite is not None
        assert invite.invitee.email
        assert self.settings.host
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = invite.invitee.email
        message["Subject"] = invitation.subject()
        message.set_content(invitation.text())
        try:
            await aiosmtplib.send(
                message,
                hostname=self.settings.host,
                port=self.settings.port,
                start_tls=self.settings.starttls,
                username=self.settings.username,
                password=self._password.get_secret_value() if self._password else None,
                timeout=self.settings.timeout_seconds,
            )
        except (aiosmtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"e-mail not accepted: {type(error).__name__}") from None


async def deliver(notifiers: list[Notifier], invitation: Invitation) -> list[str]:
    """Send through every channel that applies; the channels that delivered.

    Raises DeliveryError when none did, so that the caller retries later.
    """
    delivered: list[str] = []
    failures: list[str] = []
    for notifier in notifiers:
        if not notifier.applies_to(invitation):
            continue
        try:
            await notifier.send(invitation)
        except DeliveryError as error:
            failures.append(str(error))
        else:
            delivered.append(notifier.channel)
    if not delivered:
        raise DeliveryError("; ".join(failures) or "no notifier is configured for this invitee")
    return delivered
