"""What the operator knows of all transfers at once, fed by the watch.

One in-memory view answers the cluster-wide questions: how many runs hold a slot (the
concurrency caps), who is queued and in what order, which deadlines are due (one sweeper
for all invites and cache expiries instead of a timer per object), and phase counts for the
metrics. It is rebuilt from the watch's initial listing after a restart.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from datatx_operator import api
from datatx_operator.transitions import parse_time

Key = tuple[str, str]  # (namespace, name)


def key_of(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


TERMINAL = frozenset(
    {"Finished", "InviteNotAcceptedOnTime", "InviteDeclined", "Failed", "Cancelled"}
)


@dataclass(frozen=True)
class Entry:
    created: dt.datetime
    phase: str
    holds_slot: bool
    queued: bool
    deadline: dt.datetime | None

    @classmethod
    def of(cls, body: dict[str, Any]) -> Entry:
        spec = body.get("spec", {})
        status = body.get("status") or {}
        phase = status.get("phase", "Pending")
        terminal = phase in TERMINAL
        has_credential = bool(spec.get("credentialsRef", {}).get("credential"))
        started = bool(status.get("job"))
        if terminal:
            deadline = parse_time(status.get("cacheExpiry"))
        elif phase == "WaitingForInviteAcceptance":
            deadline = parse_time((status.get("invite") or {}).get("deadline"))
        else:
            deadline = None
        return cls(
            created=api.created_at(body["metadata"]),
            phase=phase,
            holds_slot=started and not terminal,
            queued=(
                not terminal
                and not started
                and has_credential
                and not spec.get("cancelRequested", False)
            ),
            deadline=deadline,
        )


class TransferIndex:
    def __init__(self) -> None:
        self._entries: dict[Key, Entry] = {}
        # Slots taken by this process but not yet seen in a watch event.
        self._claimed: set[Key] = set()

    def observe(self, body: dict[str, Any], deleted: bool = False) -> None:
        key = key_of(body)
        if deleted:
            self._entries.pop(key, None)
            self._claimed.discard(key)
            return
        entry = Entry.of(body)
        self._entries[key] = entry
        if entry.holds_slot or entry.phase in TERMINAL:
            self._claimed.discard(key)

    def claim(self, key: Key) -> None:
        """Count `key` as running from now, before the watch shows its new status."""
        self._claimed.add(key)

    def release(self, key: Key) -> None:
        """`key` holds no slot from now, before the watch shows its end: the caller frees
        the slot for the next in line at once, and no later event would kick that one."""
        self._claimed.discard(key)
        entry = self._entries.get(key)
        if entry is not None and entry.holds_slot:
            self._entries[key] = replace(entry, holds_slot=False)

    def _running(self) -> set[Key]:
        observed = {key for key, entry in self._entries.items() if entry.holds_slot}
        return observed | self._claimed

    def running_counts(self) -> tuple[int, Counter[str]]:
        running = self._running()
        return len(running), Counter(namespace for namespace, _ in running)

    def queue(self) -> list[Key]:
        """Transfers waiting for a slot, oldest first."""
        waiting = [
            (entry.created, key)
            for key, entry in self._entries.items()
            if entry.queued and key not in self._claimed
        ]
        return [key for _, key in sorted(waiting)]

    def due(self, moment: dt.datetime) -> list[Key]:
        return [
            key
            for key, entry in self._entries.items()
            if entry.deadline is not None and entry.deadline <= moment
        ]

    def phase_counts(self) -> Counter[str]:
        return Counter(entry.phase for entry in self._entries.values())
