"""kopf wiring: each watch event becomes a reconcile of the transfer it concerns.

Handlers are level-triggered (`on.event`): the reconciler reads the current state itself,
so a missed or repeated event is harmless and a restart needs no stored progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import kopf
from prometheus_client import start_http_server

from datatx_operator import api, kube
from datatx_operator.index import TERMINAL, TransferIndex, key_of
from datatx_operator.metrics import Metrics
from datatx_operator.notifiers import EmailNotifier, Notifier, WebhookNotifier
from datatx_operator.reconciler import Reconciler
from datatx_operator.settings import OperatorSettings, SmtpSettings, WebhookSettings
from datatx_operator.transitions import now

MANAGED = {api.LABEL_MANAGED_BY: api.MANAGED_BY}


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Our own finalizer and annotation names; events only when we post them."""
    settings.persistence.finalizer = api.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=api.KOPF_ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.KOPF_ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.peering.standalone = True
    # Serve the configured namespaces only: no cluster-wide watch of namespaces and CRDs,
    # which least-privilege RBAC does not grant.
    settings.scanning.disabled = True
    settings.posting.loggers = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # No queueing.worker_limit: handlers only note the event and trigger a reconcile, while
    # a worker holds its slot for 5 s idle after its object's last event, so a limit of N
    # let a restart catch up N objects per 5 s (bench/test_bench_restart.py).


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings)
    config = OperatorSettings()
    index = TransferIndex()
    metrics = Metrics(index)
    notifiers: list[Notifier] = [WebhookNotifier(WebhookSettings()), EmailNotifier(SmtpSettings())]
    memo.api_client = await kube.connect()
    memo.index = index
    memo.reconciler = Reconciler(kube.Kube(memo.api_client), config, notifiers, metrics, index)
    memo.essences = {}
    if config.metrics_port:
        start_http_server(config.metrics_port, registry=metrics.registry)
    memo.sweeper = asyncio.create_task(sweep(memo.reconciler, index, config.sweep_interval_seconds))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await memo.sweeper
    await memo.reconciler.stop()
    await memo.api_client.close()


async def sweep(reconciler: Reconciler, index: TransferIndex, interval: float) -> None:
    """One loop for every deadline: invites that expire, finished transfers to remove."""
    while True:
        for key in index.due(now()):
            reconciler.trigger(key)
        await asyncio.sleep(interval)


def essence(body: dict[str, Any]) -> str:
    """The state that matters for reconciling: progress updates alone do not count."""
    status = {k: v for k, v in (body.get("status") or {}).items() if k != "progress"}
    return json.dumps([body.get("spec"), status], sort_keys=True, default=str)


def needs_attention(body: dict[str, Any]) -> bool:
    """Terminal transfers only need us for a retry or a destroy; the sweeper does expiry."""
    status = body.get("status") or {}
    if status.get("phase") not in TERMINAL:
        return True
    spec = body.get("spec", {})
    retry = status.get("job") != api.job_name(body["metadata"]["name"], spec.get("restarts", 0))
    return bool(spec.get("destroyRequested")) or retry


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def transfer_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    body = dict(event["object"])
    key = key_of(body)
    if event["type"] == "DELETED":
        memo.index.observe(body, deleted=True)
        memo.essences.pop(key, None)
        return
    memo.index.observe(body)
    current = essence(body)
    if memo.essences.get(key) != current and needs_attention(body):
        memo.reconciler.trigger(key)
    memo.essences[key] = current


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
async def job_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    metadata = event["object"]["metadata"]
    transfer = (metadata.get("labels") or {}).get(api.LABEL_TRANSFER)
    if transfer:
        memo.reconciler.trigger((metadata["namespace"], transfer))
