"""pytest fixtures: one real local cluster per test session, and a fresh namespace per test.

Registered in tests/conftest.py. The cluster's processes are tied to the test process, so
even a killed test run leaves nothing running.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from localcluster.launcher import Cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A started cluster: `.kubeconfig`, `.server`, `.kubectl()`, `.api_client()`, `.workdir`."""
    instance = Cluster(tmp_path_factory.mktemp("cluster"), tie_to_parent=True)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def cluster_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace of its own for one test, deleted (without waiting) afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    cluster.wait_for_namespace_defaults(name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
