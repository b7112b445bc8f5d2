"""Prometheus metrics: gRPC calls per method (counts by outcome, latency histograms), the
bridge's own requests to the Kubernetes API, the cache size; and the /metrics endpoint.

The outcome label of a call is its gRPC status code; for CS3 calls, whose outcome travels
in band, the in-band `cs3.rpc.v1beta1.Code` name (e.g. CODE_NOT_FOUND). Labels never hold
request data.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

CALLS = Counter(
    "datatx_bridge_grpc_calls_total", "gRPC calls by method and outcome", ["method", "code"]
)
LATENCY = Histogram(
    "datatx_bridge_grpc_call_seconds",
    "gRPC call latency (streams: until the stream ends)",
    ["method"],
    buckets=(
        0.0005,
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
    ),
)

KUBE_REQUESTS = Counter(
    "datatx_bridge_kube_requests_total",
    "Requests of the bridge to the Kubernetes API (reads are served from the cache)",
    ["request", "outcome"],
)
CACHED_TRANSFERS = Gauge("datatx_bridge_cached_transfers", "Transfers in the watch-fed cache")


def metrics_app() -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
