"""The committed CRD is what the models generate, and the API server enforces its rules."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from datatx_operator import api, crd
from localcluster.launcher import KubectlError
from tests.servers.datatx import CHART, CRD, Namespace, OperatorFactory


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


def test_a_spec_the_schema_admits_but_the_models_refuse_fails_at_once(
    datatx_namespace: Namespace, run_operator: OperatorFactory
) -> None:
    """kubectl bypasses the bridge's checks; the operator applies the same models, says why,
    and starts nothing."""
    run_operator(datatx_namespace)
    nextcloud = {"url": "https://cloud.example.org/remote.php/webdav/", "vendor": "nextcloud"}
    name = _create(
        datatx_namespace,
        remotes=[
            {"name": "src", "type": "local"},
            {"name": "dst", "type": "webdav", "options": nextcloud},
        ],
    )

    status = datatx_namespace.wait_phase(name, "Failed")["status"]

    assert status["reason"] == "InvalidSpec"
    assert status["message"].startswith(
        "spec.remotes.1: a nextcloud url must end in /remote.php/dav/files/USER"
    ), status["message"]
    assert status.get("attempts", 0) == 0
    assert not datatx_namespace.exists("job", f"{name}-run0")


def _create(namespace: Namespace, **spec_changes: object) -> str:
    name = f"dt-{uuid.uuid4().hex[:8]}"
    namespace.cluster.kubectl(
        "create", "-n", namespace.name, "-f", "-", input=_transfer(name, **spec_changes)
    )
    return name


@pytest.mark.parametrize(
    ("before", "patch", "message"),
    [
        ({}, {"source": "src:/elsewhere"}, "source is immutable"),
        ({}, {"requester": {"user": "mallory"}}, "requester is immutable"),
        ({"restarts": 2}, {"restarts": 1}, "restarts only grows"),
    ],
)
def test_immutable_fields_cannot_change(
    datatx_namespace: Namespace,
    before: dict[str, Any],
    patch: dict[str, Any],
    message: str,
) -> None:
    name = _create(datatx_namespace)
    if before:
        datatx_namespace.patch_spec(name, before)
    with pytest.raises(KubectlError, match=message):
        datatx_namespace.patch_spec(name, patch)
    spec = datatx_namespace.get(name)["spec"]
    assert spec["source"] == "src:/data"
    assert spec["restarts"] == before.get("restarts", 0)


@pytest.mark.parametrize(
    ("created", "erase", "message", "kept"),
    [
        (
            {},
            {"invite": None},
            "invite cannot be removed",
            lambda spec: spec["invite"]["response"] == "Declined",
        ),
        (
            {"credentialsRef": {"credential": "dt-x-credential"}},
            {"credentialsRef": None},
            "credentialsRef cannot be removed",
            lambda spec: spec["credentialsRef"]["credential"] == "dt-x-credential",
        ),
    ],
)
def test_answers_cannot_be_erased_by_removing_their_parent(
    datatx_namespace: Namespace,
    created: dict[str, object],
    erase: dict[str, object],
    message: str,
    kept: Callable[[dict[str, Any]], bool],
) -> None:
    """Field rules only run when old and new both hold the field: a null would skip them."""
    name = _create(datatx_namespace, **created)
    datatx_namespace.patch_spec(name, {"invite": {"response": "Declined"}})
    with pytest.raises(KubectlError, match=message):
        datatx_namespace.patch_spec(name, erase)
    assert kept(datatx_namespace.get(name)["spec"])


def test_answers_and_cancels_are_one_way(datatx_namespace: Namespace) -> None:
    name = _create(datatx_namespace)

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


def _table(namespace: Namespace, *args: str) -> dict[str, str]:
    """`kubectl get` as a user types it: the first row, cut at the header's column starts
    (empty cells, e.g. a phase not yet set, keep their place)."""
    out = namespace.cluster.kubectl("get", *args, "-n", namespace.name).stdout
    header, row = out.splitlines()[:2]
    starts = [match.start() for match in re.finditer(r"\S+", header)]
    ends = [*starts[1:], None]
    return {
        column: row[start:end].strip()
        for column, start, end in zip(header.split(), starts, ends, strict=True)
    }


def test_short_name_category_and_printer_columns(datatx_namespace: Namespace) -> None:
    name = _create(datatx_namespace)
    brief = ["NAME", "PHASE", "DRIVER", "PROGRESS", "BYTES", "AGE"]
    wide = [*brief, "REASON", "ATTEMPTS", "SOURCE", "DESTINATION", "MESSAGE"]

    table = _table(datatx_namespace, api.SHORT_NAME)
    assert list(table) == brief
    assert (table["NAME"], table["DRIVER"]) == (name, "rclone")

    table = _table(datatx_namespace, api.SHORT_NAME, "-o", "wide")
    assert list(table) == wide
    assert (table["SOURCE"], table["DESTINATION"]) == ("src:/data", "dst:/out")

    table = _table(datatx_namespace, api.CATEGORY)
    assert list(table) == brief
    assert (table["NAME"], table["DRIVER"]) == (name, "rclone")
