"""`datatx-operator`: run the reconciler (kopf) with JSON logs and a liveness endpoint."""

from __future__ import annotations

import kopf

from datatx_operator import handlers
from datatx_operator.settings import OperatorSettings


def main() -> None:
    settings = OperatorSettings()
    kopf.configure(log_format=kopf.LogFormat.JSON, log_refkey="transfer")
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    kopf.run(
        registry=kopf.get_default_registry(),
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=liveness,
    )
    assert handlers  # the handlers register themselves on import
