"""`python -m devstack up|down|demo`: what `make dev-up`, `make dev-down` and `make demo` run."""

from __future__ import annotations

import argparse
from pathlib import Path

from devstack import demo, stack
from localcluster.launcher import ClusterError, KubectlError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "demo"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="the cluster's work dir")
    parser.add_argument("--namespace", default=stack.NAMESPACE, help="where datatx is installed")
    parser.add_argument(
        "--storage-namespace", default="datatx-demo", help="where the demo's endpoints run"
    )
    args = parser.parse_args()
    try:
        if args.command == "up":
            dev = stack.up(args.dir, args.namespace)
            print(
                f"datatx is running in namespace {args.namespace} "
                f"(ready in {dev.install_seconds:.1f} s)"
            )
            print(
                f"bridge: {dev.release.grpc_address} (in {dev.address_file}); "
                f"admin token in {dev.token_file}"
            )
            print(f"kubeconfig: {dev.cluster.kubeconfig}")
            return 0
        if args.command == "down":
            print("stopped" if stack.down(args.dir) else f"no cluster runs in {args.dir}")
            return 0
        return demo.run(args.dir, args.namespace, args.storage_namespace)
    except (ClusterError, KubectlError) as error:
        raise SystemExit(f"devstack {args.command}: {error}") from error


if __name__ == "__main__":
    raise SystemExit(main())
