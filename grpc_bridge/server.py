"""The bridge process: both gRPC APIs on one grpc.aio server, plus health checking,
reflection, the invite HTTP endpoint and the metrics endpoint, over one watch-fed cache.

Health reports NOT_SERVING until the cache has listed every transfer, so that no replica
answers from an empty cache, and again from the moment a graceful stop begins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path

import grpc
from aiohttp import web
from cs3.tx.v1beta1 import tx_api_pb2, tx_api_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from kubernetes import client

from datatx.v1 import datatx_pb2, datatx_pb2_grpc
from grpc_bridge import kube
from grpc_bridge.auth import Authenticator, load_static_tokens
from grpc_bridge.cache import TransferCache
from grpc_bridge.cs3_api import Cs3TxService
from grpc_bridge.health_api import Health
from grpc_bridge.interceptors import CallInterceptor
from grpc_bridge.invites_http import invite_app
from grpc_bridge.metrics import CACHED_TRANSFERS, metrics_app
from grpc_bridge.seed_api import SeedService
from grpc_bridge.settings import BridgeSettings, split_host_port
from grpc_bridge.transfers import Transfers

log = logging.getLogger(__name__)

SEED_SERVICE = datatx_pb2.DESCRIPTOR.services_by_name["DataTx"].full_name
CS3_SERVICE = tx_api_pb2.DESCRIPTOR.services_by_name["TxAPI"].full_name
HEALTH_SERVICES = ("", SEED_SERVICE, CS3_SERVICE)
MAX_SEND_BYTES = 32 * 1024 * 1024
MAX_METADATA_BYTES = 16 * 1024


def authenticator(settings: BridgeSettings) -> Authenticator:
    secret = settings.jwt_secret_file.read_bytes().strip() if settings.jwt_secret_file else None
    tokens = load_static_tokens(settings.static_tokens_file) if settings.static_tokens_file else {}
    return Authenticator(
        admin_group=settings.admin_group,
        jwt_secret=secret,
        jwt_audience=settings.jwt_audience,
        static_tokens=tokens,
    )


def _server_credentials(settings: BridgeSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _http_tls(settings: BridgeSettings) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


class Bridge:
    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
        configuration = kube.configuration(kubeconfig)
        self.cache = TransferCache(client.ApiClient(configuration), settings.namespace)
        self.kube = kube.Kube(configuration, settings.namespace, settings.kube_connections)
        self.stopping = asyncio.Event()
        self.transfers = Transfers(
            self.kube,
            self.cache,
            cancel_timeout_seconds=settings.cancel_timeout_seconds,
            stopping=self.stopping,
        )
        self.auth = authenticator(settings)
        self.health = Health(HEALTH_SERVICES)  # NOT_SERVING until the cache has listed
        self.grpc_address = ""
        self.http_address: str | None = None
        self.metrics_address: str | None = None
        self._server: grpc.aio.Server | None = None
        self._runners: list[web.AppRunner] = []
        self._ready_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.cache.start()
        server = grpc.aio.server(
            interceptors=[CallInterceptor()],
            maximum_concurrent_rpcs=self.settings.max_concurrent_streams,
            options=[
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
                ("grpc.max_send_message_length", MAX_SEND_BYTES),
                # The soft limit alone refuses only a random share of the calls above
                # it (up to 1.25 times it): the hard limit makes the bound exact.
                ("grpc.max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.absolute_max_metadata_size", MAX_METADATA_BYTES),
                ("grpc.max_concurrent_streams", self.settings.max_concurrent_streams),
                ("grpc.so_reuseport", 0),
            ],
        )
        datatx_pb2_grpc.add_DataTxServicer_to_server(SeedService(self.transfers, self.auth), server)
        tx_api_pb2_grpc.add_TxAPIServicer_to_server(Cs3TxService(self.transfers, self.auth), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [SEED_SERVICE, CS3_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        credentials = _server_credentials(self.settings)
        if credentials is None:
            port = server.add_insecure_port(self.settings.listen)
        else:
            port = server.add_secure_port(self.settings.listen, credentials)
        await server.start()
        self._server = server
        host = split_host_port(self.settings.listen)[0]
        self.grpc_address = f"{host}:{port}"
        if self.settings.http_listen:
            self.http_address = await self._serve_http(
                invite_app(self.transfers), self.settings.http_listen, _http_tls(self.settings)
            )
        if self.settings.metrics_listen:
            self.metrics_address = await self._serve_http(
                metrics_app(), self.settings.metrics_listen, None
            )
        CACHED_TRANSFERS.set_function(lambda: len(self.cache))
        self._ready_task = asyncio.create_task(self._serve_when_synced())
        self._write_addresses()
        log.info(
            "bridge listening: grpc %s, invites %s, metrics %s",
            self.grpc_address,
            self.http_address,
            self.metrics_address,
        )

    async def _serve_http(
        self, app: web.Application, address: str, tls: ssl.SSLContext | None
    ) -> str:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = split_host_port(address)
        site = web.TCPSite(runner, host, port, ssl_context=tls)
        await site.start()
        self._runners.append(runner)
        bound = runner.addresses[-1][1] if runner.addresses else port
        return f"{host}:{bound}"

    async def _serve_when_synced(self) -> None:
        await self.cache.synced.wait()
        if not self.stopping.is_set():
            for service in HEALTH_SERVICES:
                await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
            log.info("cache synced (%d transfers); serving", len(self.cache))

    async def wait_ready(self, seconds: float = 30) -> None:
        """Until the cache has listed everything and health says SERVING."""
        async with asyncio.timeout(seconds):
            await self.cache.synced.wait()
            if self._ready_task is not None:
                await self._ready_task

    def _write_addresses(self) -> None:
        path: Path | None = self.settings.addresses_file
        if path is None:
            return
        addresses = {
            "grpc": self.grpc_address,
            "http": self.http_address,
            "metrics": self.metrics_address,
        }
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(addresses))
        partial.replace(path)

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let the ones in flight finish (up to `grace`), then close."""
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        self.stopping.set()
        await self.health.enter_graceful_shutdown()
        self.cache.wake_all()  # watch streams end, telling their clients to watch again
        if self._server is not None:
            await self._server.stop(grace)
        for runner in self._runners:
            await runner.cleanup()
        if self._ready_task is not None:
            self._ready_task.cancel()
        await self.cache.stop()
        await self.kube.close()
        log.info("bridge stopped")
