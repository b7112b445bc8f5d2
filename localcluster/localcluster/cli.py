"""`localcluster`: build the tools, start and stop the development cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from localcluster import tools
from localcluster.launcher import Cluster, ClusterError

DEFAULT_DIR = Path(".cluster")


def _up(args: argparse.Namespace) -> None:
    tools.ensure_tools()
    cluster = Cluster(args.dir, images=args.images)
    seconds = cluster.start()
    print(f"cluster ready in {seconds:.1f}s: {cluster.server}")
    print(f"kubeconfig: {cluster.kubeconfig}")
    print(f"stop it with: localcluster down --dir {args.dir}")


def _down(args: argparse.Namespace) -> None:
    try:
        cluster = Cluster.attach(args.dir)
    except ClusterError:
        print(f"no cluster runs in {args.dir}")
        return
    cluster.stop()
    print("cluster stopped; no process left")


def _status(args: argparse.Namespace) -> None:
    cluster = Cluster.attach(args.dir)
    print(f"server {cluster.server}  kubeconfig {cluster.kubeconfig}")
    total = 0
    for name, (record, alive, rss) in cluster.status().items():
        total += rss
        state = "running" if alive else "STOPPED"
        print(f"  {name:24} pid {record.pid:>7}  {state:8} {rss / 2**20:7.1f} MiB")
    print(f"  {'total':24} {'':20} {total / 2**20:7.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build-tools", help="build or reuse the Go tools; print their paths")
    for name, text in (
        ("up", "start a cluster and return once it is ready"),
        ("down", "stop the cluster and every process it started"),
        ("status", "show the cluster's processes and their memory"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="the cluster's work dir")
        if name == "up":
            command.add_argument("--images", type=Path, help="image map (default images.toml)")
    args = parser.parse_args()
    try:
        if args.command == "build-tools":
            for name, path in sorted(tools.ensure_tools().items()):
                print(f"{name}\t{path}")
        else:
            {"up": _up, "down": _down, "status": _status}[args.command](args)
    except ClusterError as error:
        raise SystemExit(f"localcluster {args.command}: {error}") from error
