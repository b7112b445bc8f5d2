"""Generate the Python stubs of the datatx protos (messages, gRPC, mypy type stubs).

The stubs are checked in next to the .proto files; `make proto` rewrites them and a test
regenerates them into a temporary folder to fail when the checked-in ones are stale.
Usage: `python proto/generate.py [--out DIR]` (default: this folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
PROTO_FILES = ("datatx/v1/datatx.proto",)


def _plugin(name: str) -> str:
    """mypy-protobuf's protoc plugins sit next to the interpreter in the venv."""
    path = Path(sys.executable).parent / f"protoc-gen-{name}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make venv`")
    return f"--plugin=protoc-gen-{name}={path}"


def generate(out: Path) -> None:
    include = Path(protoc.__file__).resolve().parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        _plugin("mypy"),
        _plugin("mypy_grpc"),
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
