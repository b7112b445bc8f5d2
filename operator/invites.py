"""Invite tokens and the message that carries one to the invitee.

A token is 256 random bits. Only its SHA-256 is stored (in the CR status); the raw token
exists in memory while the invite is sent and then only in the invitee's hands.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote

from datatx_operator.models import DataTransferSpec

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, expected_hash: str) -> bool:
    """Constant-time comparison of a presented token with the stored hash."""
    return hmac.compare_digest(token_hash(token), expected_hash)


@dataclass(frozen=True)
class Invitation:
    """What the invitee is told: who asks, what would be copied, how to answer, until when."""

    transfer: str
    namespace: str
    spec: DataTransferSpec
    token: str
    deadline: dt.datetime
    base_url: str

    @property
    def answer_url(self) -> str:
        return (
            f"{self.base_url.rstrip('/')}/invites/{quote(self.transfer)}?token={quote(self.token)}"
        )

    def subject(self) -> str:
        return f"{self.spec.requester.user} asks to copy data to you (transfer {self.transfer})"

    def text(self) -> str:
        return (
            f"Hello {self.spec.invite.invitee.name if self.spec.invite else ''},\n\n"
            f"{self.spec.requester.user} would like to copy\n"
            f"  {self.spec.source}\nto\n  {self.spec.destination}\n"
            f"and needs your consent and a credential for the destination.\n\n"
            f"Accept or decline here (the link works once, until "
            f"{self.deadline.isoformat(timespec='seconds')}):\n{self.answer_url}\n"
        )

    def payload(self) -> dict[str, object]:
        """The webhook body."""
        return {
            "type": "datatx.invite",
            "transfer_id": self.transfer,
            "namespace": self.namespace,
            "requester": self.spec.requester.user,
            "source": self.spec.source,
            "destination": self.spec.destination,
            "driver": self.spec.driver.value,
            "deadline": self.deadline.isoformat(),
            "invite_token": self.token,
            "answer_url": self.answer_url,
        }
