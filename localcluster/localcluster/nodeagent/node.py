"""This node's Node object, its heartbeat Lease, and its periodic status."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
from pathlib import Path

from localcluster.nodeagent.config import AgentConfig
from localcluster.nodeagent.context import log
from localcluster.nodeagent.kube import Json, Kube, KubeError
from localcluster.nodeagent.logfiles import now_rfc3339nano

LEASE_SECONDS = 40
LEASE_RENEW_SECONDS = 10
STATUS_SECONDS = 60
KUBELET_VERSION = "v1.36.3"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _capacity(config: AgentConfig) -> dict[str, str]:
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": str(_memory_bytes()),
        "pods": "110",
        "ephemeral-storage": str(shutil.disk_usage(config.state_dir).total),
    }


def _node_status(config: AgentConfig, since: str) -> Json:
    now = now_rfc3339nano()[:19] + "Z"

    def condition(kind: str, value: str, reason: str, message: str) -> Json:
        return {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }

    capacity = _capacity(config)
    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "memory is fine"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "disk is fine"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "PIDs are fine"),
            condition("Ready", "True", "KubeletReady", "localcluster node agent is ready"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": config.pod_ip},
            {"type": "Hostname", "address": config.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": config.port}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": "localcluster (pods are local processes)",
            "containerRuntimeVersion": "localcluster://0.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": ARCH,
        },
    }


async def register(kube: Kube, config: AgentConfig) -> str:
    """Create the Node (or take over an existing one) and report it Ready; its uid."""
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": config.node_name,
            "labels": {
                "kubernetes.io/hostname": config.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": ARCH,
            },
        },
    }
    try:
        created = await kube.create("/api/v1/nodes", node)
    except KubeError as error:
        if error.status != 409:
            raise
        created = await kube.get(f"/api/v1/nodes/{config.node_name}")
    await update_status(kube, config)
    return str(created["metadata"]["uid"])


async def update_status(kube: Kube, config: AgentConfig) -> None:
    since = now_rfc3339nano()[:19] + "Z"
    node = await kube.get(f"/api/v1/nodes/{config.node_name}")
    for condition in node.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready" and condition["status"] == "True":
            since = condition["lastTransitionTime"]
    status = _node_status(config, since)
    await kube.patch(f"/api/v1/nodes/{config.node_name}/status", {"status": status})


async def _renew_lease(kube: Kube, config: AgentConfig, node_uid: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{config.node_name}"
    spec = {
        "holderIdentity": config.node_name,
        "leaseDurationSeconds": LEASE_SECONDS,
        "renewTime": now_rfc3339nano()[:26] + "Z",
    }
    try:
        await kube.patch(path, {"spec": spec})
    except KubeError as error:
        if error.status != 404:
            raise
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": config.node_name,
                "namespace": "kube-node-lease",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": config.node_name, "uid": node_uid}
                ],
            },
            "spec": spec,
        }
        await kube.create(path.rsplit("/", 1)[0], lease)


async def heartbeat(kube: Kube, config: AgentConfig, node_uid: str) -> None:
    """Renew the Lease every 10 s and re-post the status every minute, as kubelet does."""
    beats = 0
    while True:
        try:
            await _renew_lease(kube, config, node_uid)
            if beats % (STATUS_SECONDS // LEASE_RENEW_SECONDS) == 0 and beats:
                await update_status(kube, config)
        except (KubeError, OSError) as error:
            log.warning("node heartbeat failed: %s", error)
        beats += 1
        await asyncio.sleep(LEASE_RENEW_SECONDS)
