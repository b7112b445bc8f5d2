"""The node agent registers a Ready node and keeps its lease fresh."""

from __future__ import annotations

import datetime
import json

from localcluster.launcher import Cluster


def test_node_is_ready_schedulable_and_renews_its_lease(cluster: Cluster) -> None:
    node = json.loads(cluster.kubectl("get", "node", cluster.node_name, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert not node["spec"].get("taints"), "a Ready node carries no scheduling taint"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == "127.0.0.1"

    lease = json.loads(
        cluster.kubectl(
            "get", "lease", cluster.node_name, "-n", "kube-node-lease", "-o", "json"
        ).stdout
    )
    assert lease["spec"]["holderIdentity"] == cluster.node_name
    renewed = datetime.datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))
    age = datetime.datetime.now(datetime.UTC) - renewed
    assert age < datetime.timedelta(seconds=30), "the lease is renewed every 10 s"
