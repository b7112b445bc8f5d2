"""`localcluster`: build the tools, start and stop the development cluster."""

from __future__ import annotations

import argparse

from localcluster import tools


def main() -> None:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build-tools", help="build or reuse the Go tools; print their paths")
    args = parser.parse_args()
    if args.command == "build-tools":
        for name, path in sorted(tools.ensure_tools().items()):
            print(f"{name}\t{path}")
