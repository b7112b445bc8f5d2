"""What every pod worker shares: settings, the API client, the image map, event recording."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from localcluster.nodeagent.config import AgentConfig
from localcluster.nodeagent.images import ImageMap
from localcluster.nodeagent.kube import Json, Kube, KubeError
from localcluster.nodeagent.logfiles import now_rfc3339nano

log = logging.getLogger("localcluster.nodeagent")


@dataclass(frozen=True)
class AgentContext:
    config: AgentConfig
    kube: Kube
    images: ImageMap
    cluster_env: dict[str, str]

    async def event(
        self, pod: Json, kind: str, reason: str, message: str, container: str | None = None
    ) -> None:
        """Record a pod event as kubelet does, so `kubectl describe pod` explains things."""
        metadata = pod["metadata"]
        now = now_rfc3339nano()[:19] + "Z"
        involved: Json = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": metadata["namespace"],
            "name": metadata["name"],
            "uid": metadata["uid"],
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        body = {
            "metadata": {
                "generateName": f"{metadata['name']}.",
                "namespace": metadata["namespace"],
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": self.config.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.config.node_name,
        }
        try:
            await self.kube.create(f"/api/v1/namespaces/{metadata['namespace']}/events", body)
        except KubeError as error:
            log.warning("event %s for %s not recorded: %s", reason, metadata["name"], error)
