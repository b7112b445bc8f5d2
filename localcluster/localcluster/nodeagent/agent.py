"""The node agent's main loop: register the node, watch its pods, serve logs, shut down."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import aiohttp

from localcluster.nodeagent import envvars, node, server
from localcluster.nodeagent.config import AgentConfig
from localcluster.nodeagent.context import AgentContext, log
from localcluster.nodeagent.images import ImageMap
from localcluster.nodeagent.kube import Json, Kube, KubeError
from localcluster.nodeagent.pod import PodWorker
from localcluster.nodeagent.runner import ContainerRunner

WATCH_SECONDS = 300
SHUTDOWN_GRACE_SECONDS = 5


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.workers: dict[str, PodWorker] = {}
        self.finished: set[str] = set()  # uids whose worker is done: late events are ignored

    def lookup(self, namespace: str, pod: str, container: str) -> ContainerRunner | None:
        for worker in self.workers.values():
            if worker.namespace == namespace and worker.name == pod:
                return worker.runner(container)
        return None

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        config = self.config
        config.pods_dir.mkdir(parents=True, exist_ok=True)
        config.processes_dir.mkdir(parents=True, exist_ok=True)
        images = ImageMap.load(config.images)
        async with Kube(config.apiserver, config.ca, config.client_cert, config.client_key) as kube:
            cluster_env = envvars.service_env("127.0.0.1", config.apiserver_port)
            ctx = AgentContext(config, kube, images, cluster_env)
            site = await server.start(config, self.lookup)
            node_uid = await node.register(kube, config)
            log.info("node %s registered; kubelet port %d", config.node_name, config.port)
            tasks = [
                asyncio.create_task(node.heartbeat(kube, config, node_uid)),
                asyncio.create_task(self._watch_pods(ctx)),
            ]
            await stop.wait()
            log.info("stopping: ending %d pods", len(self.workers))
            for task in tasks:
                task.cancel()
            await asyncio.gather(
                *(w.shutdown(SHUTDOWN_GRACE_SECONDS) for w in list(self.workers.values()))
            )
            await site.cleanup()

    def _observe(self, ctx: AgentContext, pod: Json) -> None:
        uid = pod["metadata"]["uid"]
        if uid in self.finished:
            return
        worker = self.workers.get(uid)
        if worker is None:
            self.workers[uid] = worker = PodWorker(ctx, pod, self._forget)
        worker.update(pod)

    def _forget(self, uid: str) -> None:
        self.workers.pop(uid, None)
        self.finished.add(uid)

    async def _watch_pods(self, ctx: AgentContext) -> None:
        """List, then watch, the pods bound to this node; list again when a watch ends."""
        path = "/api/v1/pods"
        selector = {"fieldSelector": f"spec.nodeName={self.config.node_name}"}
        while True:
            try:
                listing = await ctx.kube.get(path, selector)
                present = set()
                for pod in listing.get("items", []):
                    present.add(pod["metadata"]["uid"])
                    self._observe(ctx, pod)
                for uid, worker in list(self.workers.items()):
                    if uid not in present:
                        worker.removed()
                params = {
                    **selector,
                    "resourceVersion": listing["metadata"]["resourceVersion"],
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(WATCH_SECONDS),
                }
                async for event in ctx.kube.watch(path, params):
                    pod = event["object"]
                    if event["type"] == "DELETED":
                        gone = self.workers.get(pod["metadata"]["uid"])
                        if gone is not None:
                            gone.removed()
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._observe(ctx, pod)
            except (KubeError, aiohttp.ClientError, TimeoutError) as error:
                log.warning("pod watch interrupted: %s", error)
                await asyncio.sleep(1)


async def main(config: AgentConfig) -> None:
    agent = Agent(config)
    with contextlib.suppress(asyncio.CancelledError):
        await agent.run()
