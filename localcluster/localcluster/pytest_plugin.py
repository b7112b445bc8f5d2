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
    # Pods need the namespace's default ServiceAccount and CA bundle, made by controllers.
    cluster.kubectl("wait", "--for=create", "-n", name, "sa/default", "cm/kube-root-ca.crt")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
