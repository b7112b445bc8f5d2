"""Kubeconfig files for the admin and for the components that talk to the apiserver."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from localcluster.pki import KeyPair


def _data(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write(path: Path, *, server: str, ca: Path, client: KeyPair, user: str, embed: bool) -> Path:
    """Write a one-context kubeconfig; `embed` copies the PEM data in, so the file travels."""
    cluster: dict[str, str] = {"server": server}
    credentials: dict[str, str] = {}
    if embed:
        cluster["certificate-authority-data"] = _data(ca)
        credentials["client-certificate-data"] = _data(client.cert)
        credentials["client-key-data"] = _data(client.key)
    else:
        cluster["certificate-authority"] = str(ca)
        credentials["client-certificate"] = str(client.cert)
        credentials["client-key"] = str(client.key)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "localcluster", "cluster": cluster}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {"name": "localcluster", "context": {"cluster": "localcluster", "user": user}}
        ],
        "current-context": "localcluster",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
