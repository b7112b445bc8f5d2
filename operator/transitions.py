"""Status patches for phase transitions, with conditions kept as a list keyed by type.

A JSON merge patch replaces lists whole, so each patch carries the complete conditions
list, computed from the freshly read status under the transfer's lock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from datatx_operator.models import Condition, ConditionStatus, DataTransferStatus, Phase

# Condition types, each answering one question an operator asks.
INVITED = "Invited"  # was the invitee asked?
ACCEPTED = "Accepted"  # is there a credential for the destination?
RUNNING = "Running"  # is a mover pod working on it now?
SUCCEEDED = "Succeeded"  # did it end well?
CREDENTIALS_DESTROYED = "CredentialsDestroyed"  # are its Secrets gone?


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    """An RFC 3339 time as the API server writes it; None or empty: no time."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass
class StatusPatch:
    """Changes to one transfer's status, rendered as one merge patch."""

    current: DataTransferStatus
    generation: int
    fields: dict[str, Any] = field(default_factory=dict)
    conditions: list[Condition] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conditions = list(self.current.conditions)

    def phase(self, phase: Phase, reason: str, message: str) -> StatusPatch:
        self.fields.update({"phase": phase.value, "reason": reason, "message": message})
        return self

    def set(self, **changes: Any) -> StatusPatch:
        """Set status fields by their wire (camelCase) names; None deletes a field."""
        self.fields.update(changes)
        return self

    def condition(self, kind: str, status: bool, reason: str, message: str = "") -> StatusPatch:
        value = ConditionStatus.TRUE if status else ConditionStatus.FALSE
        previous = next((c for c in self.conditions if c.type == kind), None)
        changed = previous is None or previous.status != value
        updated = Condition(
            type=kind,
            status=value,
            reason=reason,
            message=message,
            last_transition_time=now()
            if changed or previous is None
            else previous.last_transition_time,
            observed_generation=self.generation,
        )
        self.conditions = [c for c in self.conditions if c.type != kind] + [updated]
        return self

    def has_condition(self, kind: str, status: bool = True) -> bool:
        wanted = ConditionStatus.TRUE if status else ConditionStatus.FALSE
        return any(c.type == kind and c.status == wanted for c in self.conditions)

    def render(self) -> dict[str, Any]:
        body = dict(self.fields)
        body["conditions"] = [c.dump() for c in self.conditions]
        body["observedGeneration"] = self.generation
        return body
