"""Remove secrets from text before it reaches a log, a status, an event or an error message.

Tools such as rclone echo connection strings and URLs in their errors; whatever a driver
copies from them goes through a `Redactor` that knows the run's secrets (and the obscured
forms it made of them) and also blanks credentials by their shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

_BY_SHAPE = (
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s\"']+@"), rf"\1{MASK}@"),
    # Bearer <token>, Authorization: Basic <blob>
    (re.compile(r"(?i)\b(bearer|authorization:\s*basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    # key=value in connection strings or queries: pass=..., secret_access_key=..., token=...
    (
        re.compile(
            r"(?i)\b((?:[a-z0-9_]*_)?(?:pass|password|secret|token|key_pem|session_token)"
            r"(?:_[a-z0-9_]*)?)\s*=\s*[^,\s\"'&]+"
        ),
        rf"\1={MASK}",
    ),
)


class Redactor:
    """Replaces known secret values, then anything shaped like a credential."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        known = set(self._secrets)
        known.update(secret for secret in secrets if secret)
        # Longest first, so that a secret containing another one is masked whole.
        self._secrets = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in _BY_SHAPE:
            text = pattern.sub(replacement, text)
        return text
