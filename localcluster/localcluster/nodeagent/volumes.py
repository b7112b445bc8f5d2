"""A pod's volumes, written into its own directory on the node and never into host paths.

Secret, ConfigMap, downward-API and projected volumes are files written atomically (write,
then rename), so a refreshed service-account token replaces the old one in place.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from localcluster.nodeagent import objects
from localcluster.nodeagent.kube import Json, Kube, KubeError
from localcluster.nodeagent.objects import ConfigError
from localcluster.nodeagent.sandbox import Mount

DEFAULT_MODE = 0o644
DEFAULT_TOKEN_SECONDS = 3600
READ_ONLY_KINDS = frozenset({"secret", "configMap", "projected", "downwardAPI"})
SUPPORTED_KINDS = READ_ONLY_KINDS | {"emptyDir", "hostPath"}

Files = dict[str, tuple[bytes, int]]


class VolumeError(Exception):
    """A volume cannot be set up (yet); the pod stays in ContainerCreating and retries."""


@dataclass
class _Token:
    """A projected service-account token file and when to replace it."""

    directory: Path
    path: str
    source: Json
    mode: int
    refresh_at: float = 0.0


def _kind(volume: Json) -> str:
    kinds = [key for key in volume if key != "name"]
    return kinds[0] if kinds else "emptyDir"


def _safe_relative(path: str) -> str:
    normalized = posixpath.normpath(path)
    if posixpath.isabs(normalized) or normalized.startswith(".."):
        raise VolumeError(f"path {path!r} must be relative and stay inside the volume")
    return normalized


def write_files(directory: Path, files: Files) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for relative, (content, mode) in files.items():
        path = directory / _safe_relative(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(content)
        temporary.chmod(mode)
        temporary.replace(path)


def _select(data: dict[str, bytes], source: Json, default_mode: int, what: str) -> Files:
    """The files of a secret/configMap source: every key, or just its `items`."""
    items = source.get("items")
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    files: Files = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional", False):
                continue
            raise VolumeError(f"couldn't find key {item['key']} in {what}")
        files[item["path"]] = (data[item["key"]], int(item.get("mode", default_mode)))
    return files


def _world_writable(directory: Path) -> None:
    """emptyDir is writable by any user the container runs as, as kubelet makes it."""
    directory.chmod(0o777)


class PodVolumes:
    """The volumes of one pod, materialized under `root`."""

    def __init__(self, kube: Kube, pod: Json, root: Path, pod_ip: str) -> None:
        self.kube = kube
        self.pod = pod
        self.root = root
        self.pod_ip = pod_ip
        self.namespace: str = pod["metadata"]["namespace"]
        self.dirs: dict[str, Path] = {}
        self.kinds: dict[str, str] = {}
        self.tokens: list[_Token] = []

    async def prepare(self) -> None:
        """Write every volume; raise VolumeError naming the first one that cannot be made."""
        self.tokens = []
        for volume in self.pod["spec"].get("volumes", []):
            name, kind = volume["name"], _kind(volume)
            if kind not in SUPPORTED_KINDS:
                raise VolumeError(f"volume {name}: {kind} volumes are not supported here")
            self.kinds[name] = kind
            try:
                if kind == "hostPath":
                    self.dirs[name] = self._host_path(volume["hostPath"])
                    continue
                directory = self.root / name
                directory.mkdir(parents=True, exist_ok=True)
                self.dirs[name] = directory
                await self._fill(kind, volume[kind] or {}, directory)
            except (ConfigError, KubeError, OSError) as error:
                raise VolumeError(f"volume {name}: {error}") from error
        await self.refresh_tokens()
        self._apply_fs_group()

    async def _fill(self, kind: str, spec: Json, directory: Path) -> None:
        mode = int(spec.get("defaultMode", DEFAULT_MODE))
        if kind == "emptyDir":
            _world_writable(directory)
        elif kind == "secret":
            write_files(directory, await self._secret_files(spec, "secretName", mode))
        elif kind == "configMap":
            write_files(directory, await self._config_map_files(spec, mode))
        elif kind == "downwardAPI":
            write_files(directory, self._downward_files(spec.get("items", []), mode))
        elif kind == "projected":
            for source in spec.get("sources", []):
                await self._project(source, directory, mode)

    async def _project(self, source: Json, directory: Path, mode: int) -> None:
        if "secret" in source:
            write_files(directory, await self._secret_files(source["secret"], "name", mode))
        elif "configMap" in source:
            write_files(directory, await self._config_map_files(source["configMap"], mode))
        elif "downwardAPI" in source:
            write_files(directory, self._downward_files(source["downwardAPI"]["items"], mode))
        elif "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            self.tokens.append(_Token(directory, token["path"], token, mode))
        else:
            raise VolumeError(f"projected source {sorted(source)} is not supported here")

    async def _secret_files(self, spec: Json, name_key: str, mode: int) -> Files:
        name = spec[name_key]
        data = await objects.secret_data(self.kube, self.namespace, name)
        if data is None:
            if spec.get("optional", False):
                return {}
            raise VolumeError(f'secret "{name}" not found')
        return _select(data, spec, mode, f"Secret {self.namespace}/{name}")

    async def _config_map_files(self, spec: Json, mode: int) -> Files:
        name = spec["name"]
        data = await objects.config_map_data(self.kube, self.namespace, name)
        if data is None:
            if spec.get("optional", False):
                return {}
            raise VolumeError(f'configmap "{name}" not found')
        return _select(data, spec, mode, f"ConfigMap {self.namespace}/{name}")

    def _downward_files(self, items: list[Json], mode: int) -> Files:
        files: Files = {}
        for item in items:
            if "fieldRef" not in item:
                raise VolumeError("downwardAPI: only fieldRef items are supported here")
            value = objects.field_value(self.pod, item["fieldRef"]["fieldPath"], self.pod_ip)
            files[item["path"]] = (value.encode(), int(item.get("mode", mode)))
        return files

    def _host_path(self, spec: Json) -> Path:
        path, kind = Path(spec["path"]), spec.get("type", "")
        if kind == "DirectoryOrCreate":
            path.mkdir(parents=True, exist_ok=True)
        elif kind == "FileOrCreate":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        elif kind == "Directory" and not path.is_dir():
            raise VolumeError(f"hostPath {path} is not a directory")
        elif kind == "File" and not path.is_file():
            raise VolumeError(f"hostPath {path} is not a file")
        return path

    async def refresh_tokens(self) -> None:
        """Request a new token for each projected token that is 80% through its life."""
        loop = asyncio.get_running_loop()
        for token in self.tokens:
            if loop.time() < token.refresh_at:
                continue
            content, lifetime = await self._request_token(token.source)
            write_files(token.directory, {token.path: (content, token.mode)})
            token.refresh_at = loop.time() + 0.8 * min(lifetime, 86400)

    async def _request_token(self, source: Json) -> tuple[bytes, float]:
        metadata, spec = self.pod["metadata"], self.pod["spec"]
        account = spec.get("serviceAccountName") or "default"
        audience = source.get("audience")
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else [],
                "expirationSeconds": int(source.get("expirationSeconds", DEFAULT_TOKEN_SECONDS)),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                },
            },
        }
        path = f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{account}/token"
        try:
            answer = await self.kube.create(path, body)
        except KubeError as error:
            raise VolumeError(f"service account token for {account}: {error}") from error
        expires = datetime.datetime.fromisoformat(answer["status"]["expirationTimestamp"])
        lifetime = (expires - datetime.datetime.now(datetime.UTC)).total_seconds()
        return answer["status"]["token"].encode(), max(lifetime, 60.0)

    def _apply_fs_group(self) -> None:
        """Give fsGroup group ownership of the pod's own volume files, as kubelet does."""
        group = self.pod["spec"].get("securityContext", {}).get("fsGroup")
        if group is None:
            return
        for name, directory in self.dirs.items():
            if self.kinds[name] == "hostPath":
                continue
            for path in [directory, *directory.rglob("*")]:
                os.chown(path, -1, int(group), follow_symlinks=False)
                path.chmod(path.stat().st_mode | 0o040 | (0o010 if path.is_dir() else 0))

    def mounts(self, container: Json) -> list[Mount]:
        mounts = []
        for mount in container.get("volumeMounts", []):
            name = mount["name"]
            if name not in self.dirs:
                raise ConfigError(f"volume {name} is mounted but not defined in the pod")
            if mount.get("subPathExpr"):
                raise ConfigError("subPathExpr is not supported by the node agent")
            source = self.dirs[name]
            if mount.get("subPath"):
                source = source / _safe_relative(mount["subPath"])
                if not source.exists() and self.kinds[name] == "emptyDir":
                    source.mkdir(parents=True)
            read_only = bool(mount.get("readOnly")) or self.kinds[name] in READ_ONLY_KINDS
            mounts.append(Mount(mount["mountPath"], source, read_only))
        return mounts
