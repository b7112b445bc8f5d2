"""Prometheus metrics of the operator. Labels never carry user data or secrets."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from datatx_operator.index import TransferIndex
from datatx_operator.models import Phase


class PhaseCollector(Collector):
    """`datatx_transfers{phase}` read from the index at scrape time, always consistent."""

    def __init__(self, index: TransferIndex) -> None:
        self.index = index

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("datatx_transfers", "Transfers by phase", labels=["phase"])
        counts = self.index.phase_counts()
        for phase in Phase:
            family.add_metric([phase.value], counts.get(phase.value, 0))
        yield family


class Metrics:
    def __init__(self, index: TransferIndex) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(PhaseCollector(index))
        self.finished = Counter(
            "datatx_transfers_ended",
            "Transfers that reached a terminal phase",
            ["phase", "driver"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "datatx_transfer_duration_seconds",
            "From the start of a run to its end",
            ["driver", "phase"],
            buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
            registry=self.registry,
        )
        self.bytes_moved = Counter(
            "datatx_bytes_moved", "Bytes moved by finished runs", ["driver"], registry=self.registry
        )
        self.invites = Counter(
            "datatx_invites",
            "Invite events",
            ["event"],  # sent, accepted, declined, expired, delivery_failed
            registry=self.registry,
        )
        self.runs_started = Counter(
            "datatx_runs_started", "Driver Jobs created", ["driver"], registry=self.registry
        )
