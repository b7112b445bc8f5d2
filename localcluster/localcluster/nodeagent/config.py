"""The node agent's settings, given on its command line by the launcher."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "images.toml"
IMAGES_ENV = "LOCALCLUSTER_IMAGES"


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    state_dir: Path
    apiserver: str
    ca: Path
    client_cert: Path
    client_key: Path
    serving_cert: Path
    serving_key: Path
    port: int
    images: Path
    pod_ip: str = "127.0.0.1"

    @property
    def apiserver_port(self) -> int:
        port = urlsplit(self.apiserver).port
        if port is None:
            raise ValueError(f"--apiserver needs an explicit port: {self.apiserver}")
        return port

    @property
    def pods_dir(self) -> Path:
        return self.state_dir / "pods"

    @property
    def processes_dir(self) -> Path:
        """One record per running container process, for the launcher's last sweep."""
        return self.state_dir / "processes"


def parse(argv: list[str] | None = None) -> AgentConfig:
    parser = argparse.ArgumentParser(prog="python -m localcluster.nodeagent")
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--apiserver", required=True)
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--client-cert", type=Path, required=True)
    parser.add_argument("--client-key", type=Path, required=True)
    parser.add_argument("--serving-cert", type=Path, required=True)
    parser.add_argument("--serving-key", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--images", type=Path, default=Path(os.environ.get(IMAGES_ENV, DEFAULT_IMAGES))
    )
    args = parser.parse_args(argv)
    return AgentConfig(
        node_name=args.node_name,
        state_dir=args.state_dir,
        apiserver=args.apiserver,
        ca=args.ca,
        client_cert=args.client_cert,
        client_key=args.client_key,
        serving_cert=args.serving_cert,
        serving_key=args.serving_key,
        port=args.port,
        images=args.images,
    )
