"""Caps on running transfers, overall and per namespace; above them, first come first served."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from datatx_operator.index import Key, TransferIndex


@dataclass(frozen=True)
class Decision:
    start: bool
    why: str = ""


class Admission:
    def __init__(self, index: TransferIndex, max_total: int, max_per_namespace: int) -> None:
        self.index = index
        self.max_total = max_total
        self.max_per_namespace = max_per_namespace
        # Held from the decision until the run is claimed in the index.
        self.lock = asyncio.Lock()

    def _fits(self, namespace: str, total: int, per_namespace: int) -> bool:
        return total < self.max_total and per_namespace < self.max_per_namespace

    def decide(self, key: Key) -> Decision:
        total, per_namespace = self.index.running_counts()
        namespace = key[0]
        if total >= self.max_total:
            return Decision(False, f"{total} of at most {self.max_total} transfers are running")
        if per_namespace[namespace] >= self.max_per_namespace:
            return Decision(
                False,
                f"{per_namespace[namespace]} of at most {self.max_per_namespace} transfers "
                f"are running in namespace {namespace}",
            )
        for older in self.index.queue():
            if older == key:
                break
            if self._fits(older[0], total, per_namespace[older[0]]):
                return Decision(False, "older queued transfers start first")
        return Decision(True)

    def next_in_line(self) -> list[Key]:
        """Queued transfers that would fit now, oldest first, for a kick after a release."""
        total, per_namespace = self.index.running_counts()
        chosen: list[Key] = []
        for key in self.index.queue():
            if total >= self.max_total:
                break
            if per_namespace[key[0]] < self.max_per_namespace:
                chosen.append(key)
                total += 1
                per_namespace[key[0]] += 1
        return chosen
