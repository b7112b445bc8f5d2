"""Startup, liveness and readiness probes, with kubelet's thresholds and defaults.

Pods share the host's network, so httpGet, tcpSocket and grpc probes dial the pod IP;
exec probes run inside the container's mount namespace (nsenter).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from localcluster.nodeagent.kube import Json


@dataclass(frozen=True)
class ProbeTarget:
    """What a probe needs to know about the running container."""

    host: str
    ports: dict[str, int]  # named container ports
    leader: int | None  # pid inside the container's mount namespace
    env: dict[str, str]


def _port(value: int | str, target: ProbeTarget) -> int:
    if isinstance(value, int) or value.isdigit():
        return int(value)
    if value not in target.ports:
        raise ValueError(f"no container port named {value}")
    return target.ports[value]


async def _http(spec: Json, target: ProbeTarget, seconds: float) -> tuple[bool, str]:
    scheme = spec.get("scheme", "HTTP").lower()
    host = spec.get("host") or target.host
    url = f"{scheme}://{host}:{_port(spec['port'], target)}{spec.get('path', '/')}"
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders", [])}
    headers.setdefault("User-Agent", "kube-probe/localcluster")
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
        session.get(url, headers=headers, ssl=False, allow_redirects=True) as response,
    ):
        return 200 <= response.status < 400, f"HTTP probe {url}: status {response.status}"


async def _tcp(spec: Json, target: ProbeTarget, seconds: float) -> tuple[bool, str]:
    host = spec.get("host") or target.host
    port = _port(spec["port"], target)
    _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), seconds)
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return True, f"TCP probe {host}:{port}: connected"


async def _exec(spec: Json, target: ProbeTarget, seconds: float) -> tuple[bool, str]:
    if target.leader is None:
        return False, "exec probe: container not running"
    process = await asyncio.create_subprocess_exec(
        "nsenter",
        f"--target={target.leader}",
        "--mount",
        "--",
        *spec["command"],
        env=target.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace").strip()[-1024:]
    return process.returncode == 0, f"exec probe exited {process.returncode}: {text}"


async def _grpc(spec: Json, target: ProbeTarget, seconds: float) -> tuple[bool, str]:
    # grpcio ships with the project's environment, not with localcluster itself.
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = f"{target.host}:{spec['port']}"
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=spec.get("service", ""))
        reply = await stub.Check(request, timeout=seconds)
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    return serving, f"gRPC probe {address}: status {reply.status}"


HANDLERS: dict[str, Callable[[Json, ProbeTarget, float], Awaitable[tuple[bool, str]]]] = {
    "httpGet": _http,
    "tcpSocket": _tcp,
    "exec": _exec,
    "grpc": _grpc,
}


async def probe_once(probe: Json, target: ProbeTarget) -> tuple[bool, str]:
    """One attempt: (success, what happened)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    for kind, handler in HANDLERS.items():
        if kind in probe:
            try:
                return await asyncio.wait_for(handler(probe[kind], target, timeout), timeout)
            except TimeoutError:
                return False, f"{kind} probe timed out after {timeout:g}s"
            except Exception as error:  # any error of the check is a failed probe
                return False, f"{kind} probe failed: {type(error).__name__}: {error}"
    return False, f"probe has no supported handler: {sorted(probe)}"


class Prober:
    """Runs one probe periodically; reports each flip of its success state.

    `initial` is the state before any result: True for liveness (failures count at once),
    False for readiness, None for startup (both outcomes are news).
    """

    def __init__(
        self,
        probe: Json,
        target: ProbeTarget,
        on_change: Callable[[bool, str], None],
        initial: bool | None,
    ) -> None:
        self.probe = probe
        self.target = target
        self.on_change = on_change
        self.success = initial

    async def run(self) -> None:
        period = float(self.probe.get("periodSeconds", 10))
        success_threshold = int(self.probe.get("successThreshold", 1))
        failure_threshold = int(self.probe.get("failureThreshold", 3))
        await asyncio.sleep(float(self.probe.get("initialDelaySeconds", 0)))
        successes = failures = 0
        while True:
            ok, detail = await probe_once(self.probe, self.target)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and successes >= success_threshold and self.success is not True:
                self.success = True
                self.on_change(True, detail)
            elif not ok and failures >= failure_threshold and self.success is not False:
                self.success = False
                self.on_change(False, detail)
            await asyncio.sleep(period)
