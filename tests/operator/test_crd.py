"""The committed CRD is what the models generate, and the API server enforces its rules."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from datatx_operator import crd
from localcluster.launcher import Cluster, KubectlError
from tests.servers.datatx import CHART, CRD, Namespace


def test_committed_crd_is_generated_from_the_models() -> None:
    expected = crd.render()
    for path in (CRD, CHART / "crds" / CRD.name):
        assert path.read_text() == expected, f"{path} is stale: run `make crds`"


def _transfer(name: str, **spec_changes: object) -> str:
    spec = {
        "source": "src:/data",
        "destination": "dst:/out",
        "remotes": [{"name": "src", "type": "local"}, {"name": "dst", "type": "local"}],
        "requester": {"user": "alice"},
        "invite": {"invitee": {"email": "bob@example.org"}},
        **spec_changes,
    }
    return json.dumps(
        {
            "apiVersion": "datatx.io/v1alpha1",
            "kind": "DataTransfer",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source": "no-colon"}, "spec.source"),
        ({"remotes": []}, "spec.remotes"),
        ({"driver": "ftp"}, "spec.driver"),
        ({"retries": 11}, "spec.retries"),
        (
            {"remotes": [{"name": "src", "type": "local", "options": {"Bad Key": "x"}}]},
            "keys must match",
        ),
    ],
)
def test_bad_resources_are_refused_and_nothing_is_created(
    datatx_namespace: Namespace, changes: dict[str, object], message: str
) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(KubectlError, match=message):
        datatx_namespace.cluster.kubectl(
            "create", "-n", datatx_namespace.name, "-f", "-", input=_transfer(name, **changes)
        )
    assert not datatx_namespace.exists("datatransfers.datatx.io", name)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"source": "src:/elsewhere"}, "source is immutable"),
        ({"requester": {"user": "mallory"}}, "requester is immutable"),
        ({"restarts": -1}, "restarts"),
    ],
)
def test_immutable_fields_cannot_change(
    datatx_namespace: Namespace, patch: dict[str, Any], message: str
) -> None:
    cluster: Cluster = datatx_namespace.cluster
    name = f"imm-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "-n", datatx_namespace.name, "-f", "-", input=_transfer(name))
    with pytest.raises(KubectlError, match=message):
        datatx_namespace.patch_spec(name, patch)
    assert datatx_namespace.get(name)["spec"]["source"] == "src:/data"


def test_answers_and_cancels_are_one_way(datatx_namespace: Namespace) -> None:
    cluster = datatx_namespace.cluster
    name = f"oneway-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "-n", datatx_namespace.name, "-f", "-", input=_transfer(name))

    def patch(body: dict[str, object]) -> None:
        datatx_namespace.patch_spec(name, body)

    patch({"invite": {"response": "Declined"}})
    with pytest.raises(KubectlError, match="an invite is answered once"):
        patch({"invite": {"response": "Accepted"}})
    patch({"cancelRequested": True})
    with pytest.raises(KubectlError, match="a cancel is undone only by a retry"):
        patch({"cancelRequested": False})
    patch({"cancelRequested": False, "restarts": 1})
    patch({"cancelRequested": True, "destroyRequested": True})
    with pytest.raises(KubectlError, match="a destroyed transfer cannot be retried"):
        patch({"cancelRequested": False, "restarts": 2})
    spec = datatx_namespace.get(name)["spec"]
    assert (spec["invite"]["response"], spec["restarts"], spec["destroyRequested"]) == (
        "Declined",
        1,
        True,
    )
