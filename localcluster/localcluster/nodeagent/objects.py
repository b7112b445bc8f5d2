"""Secrets, ConfigMaps and pod fields that env vars and volumes draw from."""

from __future__ import annotations

import asyncio
import base64
import re

from localcluster.nodeagent.kube import Json, Kube, KubeError

# The node authorizer learns about a freshly bound pod from a watch; until then it says 403.
FORBIDDEN_RETRY_SECONDS = 10
SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ConfigError(Exception):
    """The pod refers to something missing or unsupported: CreateContainerConfigError."""


async def _read(kube: Kube, path: str) -> Json | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FORBIDDEN_RETRY_SECONDS
    while True:
        try:
            return await kube.get(path)
        except KubeError as error:
            if error.status == 404:
                return None
            if error.status != 403 or loop.time() > deadline:
                raise ConfigError(f"reading {path}: {error}") from error
        await asyncio.sleep(0.5)


async def secret_data(kube: Kube, namespace: str, name: str) -> dict[str, bytes] | None:
    """The decoded data of a Secret, or None if it does not exist."""
    secret = await _read(kube, f"/api/v1/namespaces/{namespace}/secrets/{name}")
    if secret is None:
        return None
    return {key: base64.b64decode(value) for key, value in secret.get("data", {}).items()}


async def config_map_data(kube: Kube, namespace: str, name: str) -> dict[str, bytes] | None:
    """Data and binaryData of a ConfigMap, or None if it does not exist."""
    config_map = await _read(kube, f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    if config_map is None:
        return None
    data = {key: value.encode() for key, value in config_map.get("data", {}).items()}
    for key, value in config_map.get("binaryData", {}).items():
        data[key] = base64.b64decode(value)
    return data


async def key_of(kube: Kube, namespace: str, ref: Json, kind: str) -> bytes | None:
    """The value a secretKeyRef / configMapKeyRef points at; None only when optional."""
    name, key, optional = ref["name"], ref["key"], bool(ref.get("optional", False))
    if kind == "Secret":
        data = await secret_data(kube, namespace, name)
    else:
        data = await config_map_data(kube, namespace, name)
    if data is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return data[key]


def field_value(pod: Json, path: str, pod_ip: str) -> str:
    """A downward-API fieldRef (the same set kubelet supports for env and volumes)."""
    metadata, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": pod_ip,
        "status.hostIPs": pod_ip,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        values = metadata.get(path.split(".")[1], {})
        return "\n".join(f'{key}="{value}"' for key, value in sorted(values.items()))
    match = SUBSCRIPT.match(path)
    if match:
        return str(metadata.get(match.group(1), {}).get(match.group(2), ""))
    raise ConfigError(f"fieldRef {path} is not supported")
