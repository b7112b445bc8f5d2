"""Which local executable stands in for a container image (see `images.toml`)."""

from __future__ import annotations

import fnmatch
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

STANDARD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DOCKER_HUB_PREFIXES = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


class UnmappedImageError(Exception):
    """No entry of the image map fits; the pod waits in ErrImagePull like a missing image."""


@dataclass(frozen=True)
class LocalImage:
    """What a container of this image runs, before the pod's command and args apply."""

    reference: str
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    working_dir: str


@dataclass(frozen=True)
class _Entry:
    repository: str
    tag: str = "*"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    path: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/"


def split_reference(image: str) -> tuple[str, str]:
    """(repository, tag-or-digest) of an image reference, Docker Hub names normalized."""
    name, digest = image.split("@", 1) if "@" in image else (image, "")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    else:
        tag = ""
    for prefix in DOCKER_HUB_PREFIXES:
        if name.startswith(prefix):
            name = name.removeprefix(prefix).removeprefix("library/")
    return name, digest or tag or "latest"


class ImageMap:
    """The loaded `images.toml`."""

    def __init__(self, entries: list[_Entry], source: Path) -> None:
        self.entries = entries
        self.source = source

    @classmethod
    def load(cls, path: Path) -> ImageMap:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
        entries = []
        for raw in data.get("image", []):
            entries.append(
                _Entry(
                    repository=str(raw["repository"]),
                    tag=str(raw.get("tag", "*")),
                    entrypoint=[str(part) for part in raw.get("entrypoint", [])],
                    cmd=[str(part) for part in raw.get("cmd", [])],
                    path=[str(part) for part in raw.get("path", [])],
                    env={str(k): str(v) for k, v in raw.get("env", {}).items()},
                    working_dir=str(raw.get("workingDir", "/")),
                )
            )
        return cls(entries, path)

    def resolve(self, image: str) -> LocalImage:
        repository, tag = split_reference(image)
        for entry in self.entries:
            if entry.repository == repository and fnmatch.fnmatchcase(tag, entry.tag):
                return _local_image(image, entry)
        raise UnmappedImageError(
            f'image "{image}" has no local mapping: add an entry for repository '
            f'"{repository}" to {self.source}'
        )


def _local_image(image: str, entry: _Entry) -> LocalImage:
    venv_bin = str(Path(sys.executable).parent)
    path = [part.replace("{venv_bin}", venv_bin) for part in entry.path]
    env = {"PATH": ":".join([*path, *STANDARD_PATH]), "HOME": "/"}
    env.update({key: value.replace("{venv_bin}", venv_bin) for key, value in entry.env.items()})
    return LocalImage(image, entry.entrypoint, entry.cmd, env, entry.working_dir)
