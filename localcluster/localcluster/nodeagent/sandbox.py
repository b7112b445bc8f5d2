"""The bubblewrap command line that gives one container its own view of the filesystem.

The container sees the host's filesystem with its volumes bind-mounted at their mount paths.
A mount path that does not exist on the host needs a mount point; instead of creating it on
the host, the nearest existing parent directory is replaced, inside the namespace only, by a
tmpfs that re-binds the parent's entries, and the mount point is made there.

Pods run the agent's own software (the venv, the project checked out around it, the base
interpreter). A volume laid over a directory holding it (an emptyDir at /tmp over a
checkout in /tmp, say) would hide it, so those roots are bound back on top, read-only.
"""

from __future__ import annotations

import os
import posixpath
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BWRAP = "bwrap"
# The checkout holding the agent's venv, and the interpreter the venv is made from.
SOFTWARE_ROOTS = (str(Path(sys.prefix).parent), sys.base_prefix)


@dataclass(frozen=True)
class Mount:
    """A host file or directory to appear at `target` inside the container."""

    target: str
    source: Path
    read_only: bool


def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


def _nearest_existing(path: str) -> str:
    parent = posixpath.dirname(path)
    while not Path(parent).is_dir():
        parent = posixpath.dirname(parent)
    return parent


def _rebind_entries(directory: str) -> list[str]:
    """Arguments recreating `directory`'s entries inside a tmpfs laid over it."""
    args = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.is_symlink():
            args += ["--symlink", str(Path(entry.path).readlink()), entry.path]
        else:
            args += ["--dev-bind", entry.path, entry.path]
    return args


def _placements(
    mounts: Sequence[Mount],
) -> tuple[list[tuple[Mount, str]], set[str], set[str]]:
    """Each mount with its target resolved on the host, the directories to shadow, and the
    directories to create in those shadows (bwrap would make them private to root)."""
    placed: list[tuple[Mount, str]] = []
    shadows: set[str] = set()
    created: set[str] = set()
    for mount in sorted(mounts, key=lambda m: _depth(posixpath.normpath(m.target))):
        target = posixpath.normpath(mount.target)
        if not posixpath.isabs(target):
            raise ValueError(f"mount path must be absolute: {mount.target}")
        enclosing = [
            (prior, resolved)
            for prior, resolved in placed
            if target.startswith(posixpath.normpath(prior.target).rstrip("/") + "/")
        ]
        if enclosing:
            # Inside another volume: its mount point is made in that volume's own dir.
            prior, resolved = enclosing[-1]
            relative = posixpath.relpath(target, posixpath.normpath(prior.target))
            placed.append((mount, posixpath.join(resolved, relative)))
            continue
        resolved = os.path.realpath(target)
        if not os.path.lexists(resolved):
            existing = _nearest_existing(resolved)
            shadows.add(existing)
            parent = posixpath.dirname(resolved)
            while parent != existing:
                created.add(parent)
                parent = posixpath.dirname(parent)
        placed.append((mount, resolved))
    return placed, shadows, created


def bwrap_argv(mounts: Sequence[Mount], working_dir: str, info_fd: int) -> list[str]:
    """`bwrap ...` up to and excluding the `--` before the container's command."""
    placed, shadows, created = _placements(mounts)
    argv = [BWRAP, "--die-with-parent", "--new-session", "--info-fd", str(info_fd)]
    argv += _rebind_entries("/") if "/" in shadows else ["--dev-bind", "/", "/"]
    for directory in sorted(shadows - {"/"}, key=_depth):
        mode = stat.S_IMODE(Path(directory).stat().st_mode)
        argv += ["--perms", f"{mode:04o}", "--tmpfs", directory, *_rebind_entries(directory)]
    for directory in sorted(created, key=_depth):
        argv += ["--perms", "0755", "--dir", directory]
    for mount, resolved in placed:
        argv += ["--ro-bind" if mount.read_only else "--bind", str(mount.source), resolved]
    for root in _hidden_roots(SOFTWARE_ROOTS, [resolved for _, resolved in placed]):
        argv += ["--ro-bind", root, root]
    argv += ["--chdir", working_dir]
    return argv


def _hidden_roots(roots: Sequence[str], targets: Sequence[str]) -> list[str]:
    """The roots that a mount target covers (equals or encloses), outermost first."""
    real = sorted({os.path.realpath(root) for root in roots}, key=_depth)
    return [
        root
        for root in real
        if any(root == target or root.startswith(target.rstrip("/") + "/") for target in targets)
    ]
