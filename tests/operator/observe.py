"""What a user of the operator sees besides the CR: its events and its Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from datatx_operator import api
from tests.servers.datatx import Namespace, OperatorProcess


def metric(operator: OperatorProcess, sample: str, **labels: str) -> float:
    """One sample from the operator's /metrics; 0 while a labelled counter has not moved
    (prometheus_client exports a label set only once it is used)."""
    for family in text_string_to_metric_families(operator.metrics()):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return 0.0


def transfer_events(namespace: Namespace, name: str, last: str, timeout: float = 30) -> list[Any]:
    """The transfer's own events in the order they happened, once `last` was posted
    (events are posted in the background, after the status patch)."""
    deadline = time.monotonic() + timeout
    while True:
        events = sorted(
            (e for e in namespace.events(name) if e["involvedObject"]["kind"] == api.KIND),
            key=lambda event: str(event.get("eventTime") or event["firstTimestamp"]),
        )
        if any(event["reason"] == last for event in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.5)
