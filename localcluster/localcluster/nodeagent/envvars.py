"""A container's environment, built in kubelet's order with its $(VAR) expansion."""

from __future__ import annotations

from localcluster.nodeagent import objects
from localcluster.nodeagent.kube import Json, Kube
from localcluster.nodeagent.objects import ConfigError


def expand(text: str, env: dict[str, str]) -> str:
    """Replace $(NAME) by its value when defined; $$ escapes a dollar; all else stays."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "$" or index + 1 == len(text):
            out.append(char)
            index += 1
            continue
        following = text[index + 1]
        if following == "$":
            out.append("$")
            index += 2
        elif following == "(" and (end := text.find(")", index + 2)) != -1:
            name = text[index + 2 : end]
            out.append(env.get(name, text[index : end + 1]))
            index = end + 1
        else:
            out.append(char)
            index += 1
    return "".join(out)


def service_env(apiserver_host: str, apiserver_port: int) -> dict[str, str]:
    """The in-cluster variables of the `kubernetes` Service, pointing at the real apiserver."""
    port = str(apiserver_port)
    url = f"tcp://{apiserver_host}:{port}"
    return {
        "KUBERNETES_SERVICE_HOST": apiserver_host,
        "KUBERNETES_SERVICE_PORT": port,
        "KUBERNETES_SERVICE_PORT_HTTPS": port,
        "KUBERNETES_PORT": url,
        f"KUBERNETES_PORT_{port}_TCP": url,
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": port,
        f"KUBERNETES_PORT_{port}_TCP_ADDR": apiserver_host,
    }


async def _env_from(kube: Kube, namespace: str, source: Json) -> dict[str, str]:
    prefix = source.get("prefix", "")
    if "secretRef" in source:
        ref, kind = source["secretRef"], "Secret"
        data = await objects.secret_data(kube, namespace, ref["name"])
    else:
        ref, kind = source["configMapRef"], "ConfigMap"
        data = await objects.config_map_data(kube, namespace, ref["name"])
    if data is None:
        if ref.get("optional", False):
            return {}
        raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
    return {prefix + key: value.decode(errors="replace") for key, value in data.items()}


async def _value_from(kube: Kube, pod: Json, source: Json, pod_ip: str) -> str | None:
    namespace = pod["metadata"]["namespace"]
    if "fieldRef" in source:
        return objects.field_value(pod, source["fieldRef"]["fieldPath"], pod_ip)
    if "secretKeyRef" in source:
        value = await objects.key_of(kube, namespace, source["secretKeyRef"], "Secret")
    elif "configMapKeyRef" in source:
        value = await objects.key_of(kube, namespace, source["configMapKeyRef"], "ConfigMap")
    else:
        raise ConfigError(f"env valueFrom {sorted(source)} is not supported by the node agent")
    return None if value is None else value.decode(errors="replace")


async def container_env(
    kube: Kube,
    pod: Json,
    container: Json,
    image_env: dict[str, str],
    cluster_env: dict[str, str],
    pod_ip: str,
) -> dict[str, str]:
    """Image env, then service env, then envFrom, then env; later entries win."""
    env = {**image_env, **cluster_env}
    namespace = pod["metadata"]["namespace"]
    for source in container.get("envFrom", []):
        env.update(await _env_from(kube, namespace, source))
    for variable in container.get("env", []):
        if "valueFrom" in variable:
            value = await _value_from(kube, pod, variable["valueFrom"], pod_ip)
            if value is None:
                continue
        else:
            value = expand(variable.get("value", ""), env)
        env[variable["name"]] = value
    return env
