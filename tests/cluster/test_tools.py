"""The cluster's tools are the pinned releases, and say so: `kubectl version` on both sides,
etcd, helm and grpcurl print the versions of `localcluster/versions.toml`, and that etcd is
the one the Kubernetes release itself names in its go.mod."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from localcluster.launcher import Cluster
from localcluster.tools import load_versions, tool_path

VERSIONS = load_versions()


def _output(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=60).stdout


def test_kubectl_and_the_apiserver_print_the_pinned_release(cluster: Cluster) -> None:
    shown = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    expected = f"v{VERSIONS['kubernetes']}"
    assert shown["clientVersion"]["gitVersion"] == expected
    assert shown["serverVersion"]["gitVersion"] == expected
    assert shown["serverVersion"]["minor"] == VERSIONS["kubernetes"].split(".")[1]


def test_etcd_helm_and_grpcurl_print_the_pinned_versions() -> None:
    assert f"etcd Version: {VERSIONS['etcd']}" in _output(str(tool_path("etcd")), "--version")
    helm = _output(str(tool_path("helm")), "version", "--short")
    assert helm.startswith(f"v{VERSIONS['helm']}")
    grpcurl = subprocess.run(
        [str(tool_path("grpcurl")), "--version"], capture_output=True, text=True, check=True
    )
    assert f"v{VERSIONS['grpcurl']}" in grpcurl.stdout + grpcurl.stderr


def test_etcd_is_the_version_the_kubernetes_release_expects(tmp_path: Path) -> None:
    release = f"k8s.io/kubernetes@v{VERSIONS['kubernetes']}"
    info = subprocess.run(
        ["go", "mod", "download", "-json", release],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    release_go_mod = Path(json.loads(info)["GoMod"]).read_text()
    wanted = re.search(r"go\.etcd\.io/etcd/server/v3 v(\S+)", release_go_mod)
    assert wanted is not None, "the release no longer names etcd's server module"
    assert wanted.group(1) == VERSIONS["etcd"]
