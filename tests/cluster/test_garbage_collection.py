"""The garbage collector removes what an owner owns, and only that."""

from __future__ import annotations

import json

from localcluster.launcher import Cluster
from tests.cluster.helpers import apply, get, pods_of_job, python_container, wait_until


def test_deleting_the_owner_removes_its_secret_and_job(
    cluster: Cluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    cluster.kubectl("create", "configmap", "owner", "-n", ns, "--from-literal=role=owner")
    owner = json.loads(cluster.kubectl("get", "configmap", "owner", "-n", ns, "-o", "json").stdout)
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    owned_meta = {"ownerReferences": [reference]}
    apply(
        cluster,
        ns,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "owned", **owned_meta},
            "stringData": {"k": "v"},
        },
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bystander"}},
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "owned-job", **owned_meta},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [python_container("wait", "import time; time.sleep(300)")],
                    }
                }
            },
        },
    )
    wait_until(lambda: pods_of_job(cluster, ns, "owned-job"), what="the owned job's pod")

    cluster.kubectl("delete", "configmap", "owner", "-n", ns)

    wait_until(lambda: get(cluster, ns, "secret", "owned") is None, what="owned secret gone")
    wait_until(lambda: get(cluster, ns, "job", "owned-job") is None, what="owned job gone")
    wait_until(
        lambda: not pods_of_job(cluster, ns, "owned-job"), timeout=90, what="the job's pod gone"
    )
    assert get(cluster, ns, "secret", "bystander") is not None, "unowned objects stay"
