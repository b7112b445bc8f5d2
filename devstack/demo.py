"""`make demo`: datatx on the local cluster moving real bytes, as a user would see it.

Builds or reuses the cluster, installs the chart, starts two WebDAV endpoints, runs a
transfer with the `datatx` CLI (its live progress on this terminal), checks that every byte
arrived, and prints `kubectl get datatransfers`.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console

from devstack import stack, storage

DATA_FILES = {
    "README.txt": 0,
    "data/run-001.bin": 12,
    "data/run-002.bin": 12,
    "results/summary.bin": 8,
}
BANDWIDTH = "8M"  # slow enough to watch the progress bar for a few seconds
SOURCE_DIR = "project"
DEST_DIR = "incoming/project"


def _make_data(root: Path) -> dict[str, bytes]:
    files = {}
    for name, mib in DATA_FILES.items():
        data = os.urandom(mib * 2**20) if mib else b"datatx demo data set\n"
        path = root / SOURCE_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[name] = data
    return files


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _private(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    return path


def run(workdir: Path, namespace: str, storage_namespace: str) -> int:
    console = Console(highlight=False)
    begin = time.monotonic()
    console.rule("[bold]datatx demo")
    console.print(f"local cluster in {workdir}; datatx in namespace {namespace}")
    dev = stack.up(workdir, namespace)
    how = "started" if dev.started_cluster else "reused"
    console.print(
        f"[green]✓[/] cluster {how}; chart installed, operator and bridge ready "
        f"in {dev.install_seconds:.1f} s (bridge at {dev.release.grpc_address})"
    )

    demo_dir = dev.cluster.workdir / "demo"
    source, destination = storage.start(
        dev.cluster, storage_namespace, demo_dir, ["demo-source", "demo-destination"]
    )
    sent = _make_data(source.root)
    total = sum(len(data) for data in sent.values())
    console.print(
        f"[green]✓[/] WebDAV endpoints: source {source.url} ({len(sent)} files, "
        f"{total / 2**20:.1f} MiB), destination {destination.url}"
    )

    remotes = {
        "src": source.remote(with_password=True),
        "dst": destination.remote(with_password=False),
    }
    remotes_file = _private(demo_dir / "remotes.yaml", yaml.safe_dump(remotes))
    credential_file = _private(demo_dir / "destination-credential", destination.credential)
    command = [
        "datatx",
        "submit",
        f"src:/{SOURCE_DIR}",
        f"dst:/{DEST_DIR}",
        f"--remotes={remotes_file}",
        f"--credential-file={credential_file}",
        f"--option=bandwidthLimit={BANDWIDTH}",
        "--watch",
    ]
    console.print(f"\n$ {shlex.join(command)}")
    env = {
        **os.environ,
        "DATATX_ADDRESS": dev.address_file.read_text().strip(),
        "DATATX_TOKEN_FILE": str(dev.token_file),
    }
    cli = str(Path(sys.executable).parent / "datatx")
    finished = subprocess.run([cli, *command[1:]], env=env, check=False).returncode == 0

    arrived = _digests(destination.root / DEST_DIR)
    intact = arrived == _digests(source.root / SOURCE_DIR)
    if intact:
        console.print(f"\n[green]✓[/] all {len(arrived)} files arrived intact (sha256 compared)")
    else:
        console.print(f"\n[red]✗[/] the destination differs from the source: {sorted(arrived)}")

    console.print(f"\n$ kubectl get datatransfers -n {namespace}")
    listing = dev.cluster.kubectl("get", "datatransfers", "-n", namespace)
    console.print(listing.stdout.rstrip(), markup=False)

    console.rule(
        f"demo {'done' if finished and intact else 'FAILED'} in {time.monotonic() - begin:.0f} s"
    )
    console.print(
        f"Try: export KUBECONFIG={dev.cluster.kubeconfig}; kubectl get dt -n {namespace} -o wide\n"
        "     uv run --frozen datatx list        (from the repository root)\n"
        "Stop everything with: make dev-down"
    )
    return 0 if finished and intact else 1
