"""The node agent registers a Ready node and keeps its lease fresh."""

from __future__ import annotations

import datetime
import json
import time

from localcluster.launcher import Cluster
from localcluster.nodeagent.node import LEASE_RENEW_SECONDS
from tests.cluster.helpers import wait_until


def _lease_renew_time(cluster: Cluster) -> datetime.datetime:
    lease = json.loads(
        cluster.kubectl(
            "get", "lease", cluster.node_name, "-n", "kube-node-lease", "-o", "json"
        ).stdout
    )
    assert lease["spec"]["holderIdentity"] == cluster.node_name
    return datetime.datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))


def test_node_is_ready_schedulable_and_renews_its_lease(cluster: Cluster) -> None:
    node = json.loads(cluster.kubectl("get", "node", cluster.node_name, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert not node["spec"].get("taints"), "a Ready node carries no scheduling taint"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == "127.0.0.1"

    first = _lease_renew_time(cluster)
    age = datetime.datetime.now(datetime.UTC) - first
    assert age < datetime.timedelta(seconds=3 * LEASE_RENEW_SECONDS), "a recent renewal"
    # A fresh lease that is never renewed would pass the age check once: it must move on.
    # Read again one renew interval later; polling a little longer is slack for a busy machine.
    time.sleep(LEASE_RENEW_SECONDS)
    second = wait_until(
        lambda: renewed if (renewed := _lease_renew_time(cluster)) != first else None,
        timeout=LEASE_RENEW_SECONDS + 5,
        what="the lease to be renewed",
    )
    assert second > first, "the renewal time advances"
