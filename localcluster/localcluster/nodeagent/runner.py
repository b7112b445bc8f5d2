"""One container of a pod through its runs: image, env, start, probes, exit and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Protocol

from localcluster.nodeagent import envvars
from localcluster.nodeagent.container import ContainerProcess
from localcluster.nodeagent.context import AgentContext, log
from localcluster.nodeagent.images import LocalImage, UnmappedImageError
from localcluster.nodeagent.kube import Json, KubeError
from localcluster.nodeagent.logfiles import LogWriter, now_rfc3339nano, tail_text
from localcluster.nodeagent.objects import ConfigError
from localcluster.nodeagent.probes import Prober, ProbeTarget
from localcluster.nodeagent.sandbox import Mount
from localcluster.nodeagent.volumes import PodVolumes, VolumeError

BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
TERMINATION_MESSAGE_LIMIT = 4096
DEFAULT_TERMINATION_PATH = "/dev/termination-log"


class PodHandle(Protocol):
    """What a container runner needs from the pod it belongs to."""

    ctx: AgentContext
    pod: Json
    volumes: PodVolumes
    dir: Path

    def mark_dirty(self) -> None: ...

    def grace(self) -> float: ...


def _now() -> str:
    return now_rfc3339nano()[:19] + "Z"


def _should_restart(policy: str, code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and code != 0)


def _identity(pod: Json, container: Json) -> tuple[int | None, int | None, list[int]]:
    """(uid, gid, supplementary groups) from the pod's and the container's securityContext."""
    pod_context = pod["spec"].get("securityContext") or {}
    own = container.get("securityContext") or {}
    uid = own.get("runAsUser", pod_context.get("runAsUser"))
    gid = own.get("runAsGroup", pod_context.get("runAsGroup"))
    groups = [int(g) for g in pod_context.get("supplementalGroups", [])]
    if pod_context.get("fsGroup") is not None:
        groups.append(int(pod_context["fsGroup"]))
    non_root = own.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    if non_root and not uid:
        raise ConfigError("container has runAsNonRoot and would run as root (set runAsUser)")
    return uid, gid, groups


def _command(container: Json, image: LocalImage, env: dict[str, str]) -> list[str]:
    """Kubernetes' rule: command replaces ENTRYPOINT (and drops CMD), args replace CMD."""
    if "command" in container:
        parts = [*container["command"], *container.get("args", [])]
    elif "args" in container:
        parts = [*image.entrypoint, *container["args"]]
    else:
        parts = [*image.entrypoint, *image.cmd]
    if not parts:
        raise ConfigError(f'no command specified: image "{image.reference}" has no entrypoint')
    return [envvars.expand(part, env) for part in parts]


def _missing_executable(program: str, env: dict[str, str], mounts: list[Mount]) -> bool:
    """Whether the program surely cannot be found (a path inside a volume is not checked)."""
    if "/" in program:
        inside_volume = any(program.startswith(m.target.rstrip("/") + "/") for m in mounts)
        return not inside_volume and not os.access(program, os.X_OK)
    return shutil.which(program, path=env.get("PATH", "")) is None


class ContainerRunner:
    """Runs a container under the pod's restart policy and keeps its status up to date."""

    def __init__(self, pod: PodHandle, spec: Json) -> None:
        self.pod = pod
        self.spec = spec
        self.name: str = spec["name"]
        self.restart_count = 0
        self.state: Json = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: Json = {}
        self.ready = False
        self.started = False
        self.ever_started = False
        self.finished = False
        self.exit_code: int | None = None
        self.stopping = False
        self.process: ContainerProcess | None = None
        self.container_id = ""
        self.image_id = ""
        self._wake = asyncio.Event()
        self._last_warning = ""
        self._background: set[asyncio.Task[None]] = set()

    # -- status ----------------------------------------------------------------------------

    def status(self) -> Json:
        states = {"waiting": None, "running": None, "terminated": None}
        status: Json = {
            "name": self.name,
            "image": self.spec["image"],
            "imageID": self.image_id,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": {**states, **self.state},
            "lastState": {**states, **self.last_state} if self.last_state else {},
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status

    def _set(self, state: Json) -> None:
        self.state = state
        self.pod.mark_dirty()

    async def _warn(self, reason: str, message: str) -> None:
        """A waiting state with a reason; an event only when the message is new."""
        self._set({"waiting": {"reason": reason, "message": message}})
        if message != self._last_warning:
            self._last_warning = message
            await self.pod.ctx.event(self.pod.pod, "Warning", reason, message, self.name)

    # -- lifecycle -------------------------------------------------------------------------

    def log_path(self, restart: int) -> Path:
        return self.pod.dir / "logs" / self.name / f"{restart}.log"

    def writing(self, restart: int) -> bool:
        """Whether the log of run `restart` may still grow."""
        return restart == self.restart_count and not self.finished and self.process is not None

    async def stop(self, grace: float) -> None:
        self.stopping = True
        self._wake.set()
        if self.process is not None:
            # The event must not delay the signal: the apiserver may be going away too.
            self._in_background(
                self.pod.ctx.event(
                    self.pod.pod, "Normal", "Killing", f"Stopping container {self.name}", self.name
                )
            )
            await self.process.stop(grace)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def run(self, policy: str) -> int | None:
        """Run until the policy says done or the pod stops; the last exit code."""
        backoff = BACKOFF_START
        while not self.stopping:
            try:
                image = self.pod.ctx.images.resolve(self.spec["image"])
            except UnmappedImageError as error:
                await self._warn("ErrImagePull", str(error))
                await self._pause(backoff)
                self._set({"waiting": {"reason": "ImagePullBackOff", "message": str(error)}})
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            try:
                code = await self._run_once(image)
            except (ConfigError, VolumeError, KubeError) as error:
                await self._warn("CreateContainerConfigError", str(error))
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self.exit_code = code
            if self.stopping or not _should_restart(policy, code):
                break
            message = (
                f"back-off {backoff:g}s restarting failed container={self.name} "
                f"pod={self.pod.pod['metadata']['name']}"
            )
            self.last_state = self.state
            self._set({"waiting": {"reason": "CrashLoopBackOff", "message": message}})
            await self.pod.ctx.event(self.pod.pod, "Warning", "BackOff", message, self.name)
            await self._pause(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            self.restart_count += 1
        self.finished = True
        self.pod.mark_dirty()
        return self.exit_code

    async def _run_once(self, image: LocalImage) -> int:
        pod = self.pod
        env = await envvars.container_env(
            pod.ctx.kube,
            pod.pod,
            self.spec,
            image.env,
            pod.ctx.cluster_env,
            pod.ctx.config.pod_ip,
        )
        mounts = pod.volumes.mounts(self.spec)
        uid, gid, groups = _identity(pod.pod, self.spec)
        command = _command(self.spec, image, env)
        termination = self._termination_file(uid, gid)
        if termination is not None:
            mounts.append(Mount(termination[0], termination[1], read_only=False))
        self.image_id = f"localcluster://{image.reference}"
        if _missing_executable(command[0], env, mounts):
            return self._start_error(f'exec: "{command[0]}": executable file not found in $PATH')
        if uid is not None or gid is not None:
            command = [*_setpriv(uid, gid, groups), *command]
        restart = self.restart_count
        self.container_id = f"localcluster://{pod.pod['metadata']['uid']}/{self.name}/{restart}"
        log_writer = LogWriter(self.log_path(restart))
        started_at = _now()
        record = pod.ctx.config.processes_dir / f"{pod.pod['metadata']['uid']}-{self.name}.json"
        process = await ContainerProcess.start(
            mounts,
            self.spec.get("workingDir") or image.working_dir,
            command,
            env,
            log_writer,
            record,
        )
        self.process = process
        probes: list[asyncio.Task[None]] = []
        if process.started:
            self.ever_started = True
            self._set({"running": {"startedAt": started_at}})
            await pod.ctx.event(
                pod.pod, "Normal", "Started", f"Started container {self.name}", self.name
            )
            probes = self._start_probes(process, env)
            if self.stopping:
                await process.stop(pod.grace())
        code = await process.exit_code
        for task in probes:
            task.cancel()
        self.process = None
        self.ready = False
        self.started = False
        if not process.started:
            return self._start_error(tail_text(log_writer) or "sandbox setup failed")
        message = self._termination_message(termination, code, log_writer)
        terminated: Json = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started_at,
            "finishedAt": _now(),
            "containerID": self.container_id,
        }
        if code > 128:
            terminated["signal"] = code - 128
        if message:
            terminated["message"] = message
        self._set({"terminated": terminated})
        return code

    def _start_error(self, message: str) -> int:
        now = _now()
        self._set(
            {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": message,
                    "startedAt": now,
                    "finishedAt": now,
                }
            }
        )
        return 128

    def _termination_file(self, uid: int | None, gid: int | None) -> tuple[str, Path] | None:
        target = self.spec.get("terminationMessagePath", DEFAULT_TERMINATION_PATH)
        if not target:
            return None
        path = self.pod.dir / "termination" / f"{self.name}-{self.restart_count}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        path.chmod(0o666)
        if uid is not None or gid is not None:
            os.chown(path, uid if uid is not None else -1, gid if gid is not None else -1)
        return target, path

    def _termination_message(
        self, termination: tuple[str, Path] | None, code: int, log_writer: LogWriter
    ) -> str:
        message = ""
        if termination is not None:
            with termination[1].open("rb") as handle:
                message = handle.read(TERMINATION_MESSAGE_LIMIT).decode(errors="replace")
        fallback = self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        if not message and fallback and code != 0:
            message = tail_text(log_writer)
        return message

    # -- probes ----------------------------------------------------------------------------

    def _start_probes(
        self, process: ContainerProcess, env: dict[str, str]
    ) -> list[asyncio.Task[None]]:
        ports = {
            port["name"]: int(port["containerPort"])
            for port in self.spec.get("ports", [])
            if port.get("name")
        }
        target = ProbeTarget(self.pod.ctx.config.pod_ip, ports, process.leader, env)
        tasks: list[asyncio.Task[None]] = []

        def on_ready(ok: bool, detail: str) -> None:
            self.ready = ok
            self.pod.mark_dirty()
            if not ok:
                self._probe_event("Readiness", detail)

        def on_live(ok: bool, detail: str) -> None:
            if not ok:
                self._probe_event("Liveness", detail)
                self._in_background(self._kill_unhealthy(process))

        def start_steady_probes() -> None:
            self.started = True
            self.ready = "readinessProbe" not in self.spec
            self.pod.mark_dirty()
            if "readinessProbe" in self.spec:
                prober = Prober(self.spec["readinessProbe"], target, on_ready, initial=False)
                tasks.append(asyncio.create_task(prober.run()))
            if "livenessProbe" in self.spec:
                prober = Prober(self.spec["livenessProbe"], target, on_live, initial=True)
                tasks.append(asyncio.create_task(prober.run()))

        def on_startup(ok: bool, detail: str) -> None:
            if ok:
                tasks[0].cancel()
                start_steady_probes()
            else:
                on_live(False, detail)

        if "startupProbe" in self.spec:
            prober = Prober(self.spec["startupProbe"], target, on_startup, initial=None)
            tasks.append(asyncio.create_task(prober.run()))
        else:
            start_steady_probes()
        return tasks

    def _probe_event(self, kind: str, detail: str) -> None:
        log.info("%s probe of %s failed: %s", kind, self.name, detail)
        self._in_background(
            self.pod.ctx.event(
                self.pod.pod, "Warning", "Unhealthy", f"{kind} probe failed: {detail}", self.name
            )
        )

    async def _kill_unhealthy(self, process: ContainerProcess) -> None:
        await process.stop(self.pod.grace())

    def _in_background(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _setpriv(uid: int | None, gid: int | None, groups: list[int]) -> list[str]:
    """Drop to the pod's user inside the sandbox, after bwrap has set up the mounts as root."""
    argv = ["setpriv"]
    if uid is not None:
        argv.append(f"--reuid={uid}")
    if gid is not None:
        argv.append(f"--regid={gid}")
    argv.append(f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups")
    return [*argv, "--"]
