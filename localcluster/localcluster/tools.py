"""Build the cluster's tools from the Go module proxy, once, into a cache keyed by version.

Kubernetes and etcd are multi-module repositories whose go.mod points sibling modules at
relative folders (`k8s.io/api => ./staging/src/k8s.io/api`), which `go install pkg@v`
refuses. A small wrapper module requires the release and replaces each of those siblings
with its published tag, read from the release's own go.mod, so the list is never stale.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

VERSIONS_FILE = Path(__file__).resolve().parent.parent / "versions.toml"
# `k8s.io/api => ./staging/src/k8s.io/api`; etcd's `=> ./FORBIDDEN_DEPENDENCY` guards are skipped.
RELATIVE_REPLACE = re.compile(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+\.\.?/(?!FORBIDDEN)\S+\s*$")


def load_versions() -> dict[str, str]:
    with VERSIONS_FILE.open("rb") as handle:
        return {name: str(value) for name, value in tomllib.load(handle).items()}


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "datatx" / "tools"
    return Path(os.environ.get("DATATX_TOOLS_CACHE", default))


@dataclass(frozen=True)
class GoTool:
    """One cached build: a wrapper module around `module@version` producing `binaries`."""

    key: str
    module: str
    version: str
    packages: dict[str, str]  # binary name -> import path of its main package
    ldflags: tuple[str, ...] = ()

    @property
    def bin_dir(self) -> Path:
        return cache_root() / f"{self.key}-{self.version}" / "bin"

    def is_built(self) -> bool:
        return all((self.bin_dir / name).is_file() for name in self.packages)


def _kubernetes(version: str) -> GoTool:
    major, minor, _ = version.split(".")
    build_vars = {
        "gitVersion": f"v{version}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    ldflags = tuple(
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in build_vars.items()
    )
    commands = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
    return GoTool(
        key="kubernetes",
        module="k8s.io/kubernetes",
        version=version,
        packages={name: f"k8s.io/kubernetes/cmd/{name}" for name in commands},
        ldflags=ldflags,
    )


def all_tools() -> list[GoTool]:
    versions = load_versions()
    return [
        _kubernetes(versions["kubernetes"]),
        GoTool(
            "etcd",
            "go.etcd.io/etcd/server/v3",
            versions["etcd"],
            {"etcd": "go.etcd.io/etcd/server/v3"},
        ),
        GoTool(
            "helm",
            "helm.sh/helm/v4",
            versions["helm"],
            {"helm": "helm.sh/helm/v4/cmd/helm"},
            (f"-X helm.sh/helm/v4/internal/version.version=v{versions['helm']}",),
        ),
        GoTool(
            "grpcurl",
            "github.com/fullstorydev/grpcurl",
            versions["grpcurl"],
            {"grpcurl": "github.com/fullstorydev/grpcurl/cmd/grpcurl"},
            (f"-X main.version=v{versions['grpcurl']}",),
        ),
    ]


def tool_path(name: str) -> Path:
    """The cached binary `name`; raises when the tools were not built."""
    for tool in all_tools():
        if name in tool.packages:
            path = tool.bin_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"{name} is not built yet: run `make tools`")
            return path
    raise KeyError(f"no tool named {name}")


def _go(args: list[str], cwd: Path) -> str:
    result = subprocess.run(
        ["go", *args], cwd=cwd, capture_output=True, text=True, env=_go_env(), check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} failed:\n{result.stderr.strip()}")
    return result.stdout


def _go_env() -> dict[str, str]:
    return {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -mod=mod"}


def _sibling_replacements(tool: GoTool, workdir: Path) -> list[str]:
    """`replace` lines pinning each relatively-replaced sibling module to the release tag."""
    info = json.loads(_go(["mod", "download", "-json", f"{tool.module}@v{tool.version}"], workdir))
    release_go_mod = Path(info["GoMod"]).read_text()
    siblings = [
        m.group(1) for line in release_go_mod.splitlines() if (m := RELATIVE_REPLACE.match(line))
    ]
    sibling_version = (
        f"v0.{tool.version.split('.', 1)[1]}" if tool.key == "kubernetes" else f"v{tool.version}"
    )
    return [f"replace {module} => {module} {sibling_version}" for module in siblings]


def _write_wrapper(tool: GoTool, workdir: Path) -> None:
    (workdir / "go.mod").write_text("module datatx.local/tools\n\ngo 1.24\n")
    imports = "\n".join(f'\t_ "{package}"' for package in tool.packages.values())
    (workdir / "tools.go").write_text(
        f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"
    )
    _go(["mod", "edit", f"-require={tool.module}@v{tool.version}"], workdir)
    replacements = _sibling_replacements(tool, workdir)
    if replacements:
        with (workdir / "go.mod").open("a") as handle:
            handle.write("\n" + "\n".join(replacements) + "\n")
    _go(["mod", "tidy"], workdir)


def _stream_build(tool: GoTool, workdir: Path, out_dir: Path) -> Iterator[str]:
    """Run `go build -v` per binary and yield the packages it compiles, for the progress bar."""
    flags = " ".join(("-s", "-w", *tool.ldflags))
    for name, package in tool.packages.items():
        command = [
            "go",
            "build",
            "-v",
            "-trimpath",
            f"-ldflags={flags}",
            "-o",
            str(out_dir / name),
            package,
        ]
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=_go_env(),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert process.stderr is not None
        lines: list[str] = []
        for line in process.stderr:
            lines.append(line.rstrip())
            yield line.strip()
        if process.wait() != 0:
            raise RuntimeError(f"building {name} failed:\n" + "\n".join(lines[-30:]))


def build(tool: GoTool, progress: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix=f"datatx-{tool.key}-") as tmp:
        workdir = Path(tmp)
        task = progress.add_task(f"{tool.key} v{tool.version}: resolving modules", total=None)
        if not progress.console.is_terminal:  # no live bar in a CI log: one line per step
            progress.console.print(f"building {tool.key} v{tool.version} (Go module proxy)")
        _write_wrapper(tool, workdir)
        deps = _go(["list", "-deps", *tool.packages.values()], workdir).split()
        progress.update(task, total=len(deps), description=f"{tool.key} v{tool.version}: compiling")
        staging = tool.bin_dir.parent / "bin.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for _ in _stream_build(tool, workdir, staging):
            progress.advance(task)
        shutil.rmtree(tool.bin_dir, ignore_errors=True)
        staging.rename(tool.bin_dir)
        progress.update(task, completed=len(deps), description=f"{tool.key} v{tool.version}: built")


def ensure_tools() -> dict[str, Path]:
    """Build what is missing; return every binary by name."""
    missing = [tool for tool in all_tools() if not tool.is_built()]
    if missing:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns) as progress:
            for tool in missing:
                build(tool, progress)
    return {name: tool.bin_dir / name for tool in all_tools() for name in tool.packages}
