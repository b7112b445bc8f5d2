"""What a user of the operator sees besides the CR: its events and its Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families

from datatx_operator import api
from tests.servers.datatx import Namespace, OperatorProcess


def watch_transfers(
    namespace: Namespace, timeout_seconds: int, **list_options: Any
) -> Iterator[dict[str, Any]]:
    """Each transfer as it changes, from the API server's watch (no polling delay)."""
    custom = client.CustomObjectsApi(namespace.api)
    stream = watch.Watch()
    try:
        for event in stream.stream(
            custom.list_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            namespace.name,
            api.PLURAL,
            timeout_seconds=timeout_seconds,
            **list_options,
        ):
            yield event["object"]
    finally:
        stream.stop()


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


def assert_one_job_each_ran_once(namespace: Namespace, names: list[str]) -> None:
    """No attempt started twice: each transfer has exactly one Job, which succeeded once."""
    namespace.wait_jobs_complete()
    jobs = namespace.objects("jobs")
    per_transfer = sorted(job["metadata"]["labels"][api.LABEL_TRANSFER] for job in jobs)
    assert per_transfer == sorted(names), "exactly one Job per transfer"
    for job in jobs:
        ran = (job["status"].get("succeeded"), job["status"].get("failed", 0))
        assert ran == (1, 0), (job["metadata"]["name"], job["status"])
