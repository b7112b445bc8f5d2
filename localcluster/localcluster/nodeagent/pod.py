"""One pod on this node, from its first sight to the deletion of its object.

The worker prepares the volumes, runs init containers one by one, then all containers under
the restart policy; it enforces activeDeadlineSeconds, stops the containers gracefully when
the pod is deleted, reports a terminal phase, and finally deletes the object with grace 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import shutil
import time
from collections.abc import Callable

from localcluster.nodeagent.context import AgentContext, log
from localcluster.nodeagent.kube import Json, KubeError
from localcluster.nodeagent.logfiles import now_rfc3339nano
from localcluster.nodeagent.runner import ContainerRunner
from localcluster.nodeagent.volumes import PodVolumes, VolumeError

TERMINAL = ("Succeeded", "Failed")
TOKEN_CHECK_SECONDS = 30
# Like the kubelet: a missing Secret or ConfigMap is retried soon, then less often.
VOLUME_RETRY_SECONDS = (0.2, 0.4, 0.8, 1.6, 2.0)


def _now() -> str:
    return now_rfc3339nano()[:19] + "Z"


class PodWorker:
    """Drives one pod; `update` and `removed` feed it what the watch sees."""

    def __init__(self, ctx: AgentContext, pod: Json, on_done: Callable[[str], None]) -> None:
        self.ctx = ctx
        self.pod = pod
        metadata = pod["metadata"]
        self.uid: str = metadata["uid"]
        self.namespace: str = metadata["namespace"]
        self.name: str = metadata["name"]
        self.dir = ctx.config.pods_dir / self.uid
        self.volumes = PodVolumes(ctx.kube, pod, self.dir / "volumes", ctx.config.pod_ip)
        spec = pod["spec"]
        self.policy: str = spec.get("restartPolicy", "Always")
        self.init_runners = [ContainerRunner(self, c) for c in spec.get("initContainers", [])]
        self.runners = [ContainerRunner(self, c) for c in spec["containers"]]
        self.deleting = asyncio.Event()
        self.gone = False
        self.stopping = False
        self.volumes_ready = False
        self.initialized = not self.init_runners
        self.init_failed = False
        self.terminal = False
        self.end_reason: tuple[str, str] | None = None
        self.start_time: str = pod.get("status", {}).get("startTime") or _now()
        self._on_done = on_done
        self._dirty = asyncio.Event()
        self._push_lock = asyncio.Lock()
        self._pushed: Json | None = None
        self._transitions: dict[str, tuple[bool, str]] = {}
        self._warned: dict[str, str] = {}
        self.task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    # -- inputs from the watch -----------------------------------------------------------

    def update(self, pod: Json) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp"):
            self.deleting.set()

    def removed(self) -> None:
        """The object is gone (force deletion): stop everything, report nothing more."""
        self.gone = True
        self.deleting.set()

    # -- what the runners and the log server use -----------------------------------------

    def mark_dirty(self) -> None:
        self._dirty.set()

    def grace(self) -> float:
        metadata, spec = self.pod["metadata"], self.pod["spec"]
        if metadata.get("deletionGracePeriodSeconds") is not None:
            return float(metadata["deletionGracePeriodSeconds"])
        return float(spec.get("terminationGracePeriodSeconds", 30))

    def runner(self, container: str) -> ContainerRunner | None:
        for runner in [*self.init_runners, *self.runners]:
            if runner.name == container:
                return runner
        return None

    # -- the life of the pod -------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self.pod.get("status", {}).get("phase") not in TERMINAL:
                await self._supervise()
            await self.deleting.wait()
            await self._delete_object()
        except Exception:
            log.exception("pod %s/%s: worker failed", self.namespace, self.name)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
            self._on_done(self.uid)

    async def _supervise(self) -> None:
        self.mark_dirty()
        status_loop = asyncio.create_task(self._status_loop())
        life = asyncio.create_task(self._live())
        deletion = asyncio.create_task(self.deleting.wait())
        next_token_check = asyncio.get_running_loop().time() + TOKEN_CHECK_SECONDS
        try:
            while not life.done():
                await asyncio.wait({life, deletion}, timeout=1, return_when="FIRST_COMPLETED")
                if life.done():
                    break
                if self.deleting.is_set() or self._deadline_exceeded():
                    if not self.deleting.is_set():
                        self.end_reason = (
                            "DeadlineExceeded",
                            "Pod was active on the node longer than the specified deadline",
                        )
                        await self.ctx.event(
                            self.pod, "Normal", "DeadlineExceeded", self.end_reason[1]
                        )
                    await self._stop_containers()
                    break
                if asyncio.get_running_loop().time() > next_token_check:
                    next_token_check += TOKEN_CHECK_SECONDS
                    await self._refresh_tokens()
            await life
            self.terminal = True
            if not self.gone:
                await self._push_status()
        finally:
            for task in (status_loop, life, deletion):
                task.cancel()

    async def _live(self) -> None:
        failures = 0
        while not self.stopping:
            try:
                await self.volumes.prepare()
                break
            except VolumeError as error:
                log.info("pod %s/%s: %s", self.namespace, self.name, error)
                await self._warn_once("FailedMount", str(error))
                await asyncio.sleep(
                    VOLUME_RETRY_SECONDS[min(failures, len(VOLUME_RETRY_SECONDS) - 1)]
                )
                failures += 1
        if self.stopping:
            return
        self.volumes_ready = True
        self.mark_dirty()
        for runner in self.init_runners:
            code = await runner.run("Never" if self.policy == "Never" else "OnFailure")
            if code is None or runner.stopping:
                return
            if code != 0:
                self.init_failed = True
                return
        self.initialized = True
        self.mark_dirty()
        await asyncio.gather(*(runner.run(self.policy) for runner in self.runners))

    async def _stop_containers(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        grace = self.grace()
        await asyncio.gather(
            *(runner.stop(grace) for runner in [*self.init_runners, *self.runners])
        )

    def _deadline_exceeded(self) -> bool:
        seconds = self.pod["spec"].get("activeDeadlineSeconds")
        if seconds is None:
            return False
        started = _parse_time(self.start_time)
        return time.time() - started > float(seconds)

    async def _refresh_tokens(self) -> None:
        if not self.volumes_ready:
            return
        try:
            await self.volumes.refresh_tokens()
        except VolumeError as error:
            log.warning("pod %s/%s: %s", self.namespace, self.name, error)

    async def _warn_once(self, reason: str, message: str) -> None:
        if self._warned.get(reason) != message:
            self._warned[reason] = message
            await self.ctx.event(self.pod, "Warning", reason, message)

    async def _delete_object(self) -> None:
        if self.gone:
            return
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        with contextlib.suppress(KubeError):
            await self.ctx.kube.delete(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.name}", body
            )

    # -- status ----------------------------------------------------------------------------

    def phase(self) -> str:
        if self.end_reason or self.init_failed:
            return "Failed"
        all_done = self.initialized and all(runner.finished for runner in self.runners)
        if all_done or self.terminal:
            codes = [runner.exit_code for runner in self.runners]
            return "Succeeded" if all(code == 0 for code in codes) else "Failed"
        if self.initialized and any(runner.ever_started for runner in self.runners):
            return "Running"
        return "Pending"

    def _condition(self, kind: str, value: bool, reason: str = "", message: str = "") -> Json:
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != value:
            self._transitions[kind] = (value, _now())
        # Conditions merge by type: a key left out would keep its old value, so send nulls.
        return {
            "type": kind,
            "status": "True" if value else "False",
            "lastProbeTime": None,
            "lastTransitionTime": self._transitions[kind][1],
            "reason": None if value else (reason or None),
            "message": None if value else (message or None),
        }

    def status(self) -> Json:
        phase = self.phase()
        unready = [runner.name for runner in self.runners if not runner.ready]
        ready = phase == "Running" and not unready
        not_ready_reason = "PodCompleted" if phase in TERMINAL else "ContainersNotReady"
        not_ready_message = f"containers with unready status: [{' '.join(unready)}]"
        pending_init = [runner.name for runner in self.init_runners if runner.exit_code != 0]
        ip = self.ctx.config.pod_ip
        status: Json = {
            "phase": phase,
            "hostIP": ip,
            "hostIPs": [{"ip": ip}],
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": self.start_time,
            "conditions": [
                self._condition(
                    "PodReadyToStartContainers", self.volumes_ready and phase not in TERMINAL
                ),
                self._condition(
                    "Initialized",
                    self.initialized,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(pending_init)}]",
                ),
                self._condition("ContainersReady", ready, not_ready_reason, not_ready_message),
                self._condition("Ready", ready, not_ready_reason, not_ready_message),
            ],
            "containerStatuses": [runner.status() for runner in self.runners],
        }
        if self.init_runners:
            status["initContainerStatuses"] = [runner.status() for runner in self.init_runners]
        if self.end_reason:
            status["reason"], status["message"] = self.end_reason
        return status

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._push_status()
            await asyncio.sleep(0.1)  # let a burst of changes settle into one patch

    async def _push_status(self) -> None:
        async with self._push_lock:
            status = self.status()
            if status == self._pushed:
                return
            path = f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status"
            try:
                await self.ctx.kube.patch(path, {"status": status})
                self._pushed = status
            except KubeError as error:
                if error.status == 404:
                    self.removed()
                    return
                log.warning("pod %s/%s: status not written: %s", self.namespace, self.name, error)
                self._retry_later()

    def _retry_later(self) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(1, self.mark_dirty)

    async def shutdown(self, grace: float) -> None:
        """The agent stops: end the containers quickly, leave the objects as they are."""
        self.stopping = True
        await asyncio.gather(
            *(runner.stop(grace) for runner in [*self.init_runners, *self.runners])
        )
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def _parse_time(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
