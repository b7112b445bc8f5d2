"""Helpers for the driver tests: one run driven directly, as the mover would drive it, and a
transfer submitted to the operator on the local cluster, as the bridge would submit it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datatx_operator import api
from datatx_operator.drivers.base import Driver, Outcome, RunContext
from datatx_operator.models import DataTransferSpec, Progress
from tests.servers.datatx import Namespace
from tests.servers.storage import StorageServer


def context(tmp_path: Path, secrets: dict[str, str], **spec: Any) -> RunContext:
    """A run of a transfer called `dt-test` with the given spec fields."""
    spec.setdefault("requester", {"user": "alice"})
    spec.setdefault("credentials_ref", {"credential": "dt-test-credential"})
    return RunContext(
        transfer="dt-test",
        namespace="default",
        spec=DataTransferSpec.model_validate(spec),
        secrets=secrets,
        workdir=tmp_path,
    )


async def run(driver: Driver, every: float = 0.2) -> tuple[Outcome, list[Progress]]:
    """start, then wait while reading progress as the mover does; the samples seen."""
    await driver.start()
    samples: list[Progress] = []
    waiting = asyncio.create_task(driver.wait())
    while not waiting.done():
        samples.append(await driver.progress())
        await asyncio.wait([waiting], timeout=every)
    samples.append(await driver.progress())
    return waiting.result(), samples


def assert_no_secret(secrets: Iterable[str], *texts: str) -> None:
    for secret in secrets:
        assert secret, "an empty secret proves nothing"
        for text in texts:
            assert secret not in text


def assert_no_secret_on_cluster(namespace: Namespace, name: str, secrets: Iterable[str]) -> None:
    """No secret in what anyone can read about the transfer on the cluster: the CR and its
    events, the specs of its Jobs and mover pods (container env and args included) and the
    logs of every mover pod (a failed attempt's too)."""
    kubectl = namespace.cluster.kubectl
    where = ["-n", namespace.name, "-l", f"{api.LABEL_TRANSFER}={name}"]
    jobs = json.loads(kubectl("get", "jobs", *where, "-o", "json").stdout)["items"]
    pods = json.loads(kubectl("get", "pods", *where, "-o", "json").stdout)["items"]
    assert jobs, "no Job of the transfer to look at"
    assert pods, "no mover pod of the transfer to look at"
    logs = [
        kubectl("logs", "-n", namespace.name, pod["metadata"]["name"], "--all-containers").stdout
        for pod in pods
    ]
    assert all(logs), "a mover pod without logs proves nothing"
    assert_no_secret(
        list(secrets), visible_text(namespace, name), json.dumps(jobs), json.dumps(pods), *logs
    )


def remote_secrets(server: StorageServer, remote: str = "src") -> dict[str, str]:
    """The `<remote>-remotes` Secret's keys for a remote on `server`."""
    return {f"{remote}.{k}": v for k, v in server.secret_options.items()}


def submit(
    namespace: Namespace, spec: dict[str, Any], credential: str, remote_secrets: dict[str, str]
) -> str:
    """Create a transfer as the bridge does: the CR, then its Secrets owned by it."""
    name = f"dt-{uuid.uuid4().hex[:12]}"
    spec = {
        "requester": {"user": "alice"},
        "retries": 0,
        **spec,
        "credentialsRef": {
            "credential": api.credential_secret_name(name),
            **({"remotes": api.remotes_secret_name(name)} if remote_secrets else {}),
        },
    }
    body = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name},
        "spec": DataTransferSpec.model_validate(spec).dump(),
    }
    kubectl = namespace.cluster.kubectl
    created = json.loads(
        kubectl(
            "create", "-n", namespace.name, "-o", "json", "-f", "-", input=json.dumps(body)
        ).stdout
    )
    owner = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": name,
        "uid": created["metadata"]["uid"],
        "controller": True,
    }
    secrets = {api.credential_secret_name(name): {api.SECRET_KEY_CREDENTIAL: credential}}
    if remote_secrets:
        secrets[api.remotes_secret_name(name)] = remote_secrets
    for secret_name, data in secrets.items():
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": secret_name,
                "labels": {api.LABEL_TRANSFER: name},
                "ownerReferences": [owner],
            },
            "stringData": data,
        }
        kubectl("create", "-n", namespace.name, "-f", "-", input=json.dumps(secret))
    return name


def visible_text(namespace: Namespace, name: str) -> str:
    """Everything a user or an operator can read about a transfer: the CR and its events."""
    return json.dumps(namespace.get(name)) + json.dumps(namespace.events(name))
