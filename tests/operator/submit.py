"""Create transfers the way the bridge does (CR first, then its owned Secrets, through the
API), and answer invites the way the bridge does, so that operator tests need no bridge."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from kubernetes import client

from datatx_operator import api
from datatx_operator.models import (
    CredentialsRef,
    DataTransferSpec,
    Invite,
    Invitee,
    RcloneOptions,
    Remote,
    RemoteType,
    Requester,
)
from tests.servers.datatx import Namespace
from tests.servers.storage import StorageServer


def remote(name: str, server: StorageServer, *, with_secrets: bool) -> Remote:
    return Remote(
        name=name,
        type=RemoteType(server.kind),
        options=server.options,
        secret_options=sorted(server.secret_options) if with_secrets else [],
    )


def _secret(namespace: Namespace, name: str, owner: dict[str, Any], data: dict[str, str]) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {api.LABEL_TRANSFER: owner["metadata"]["name"]},
            "ownerReferences": [
                {
                    "apiVersion": api.API_VERSION,
                    "kind": api.KIND,
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }
    client.CoreV1Api(namespace.api).create_namespaced_secret(namespace.name, body)


def submit(
    namespace: Namespace,
    source: StorageServer,
    source_path: str,
    destination: StorageServer,
    destination_path: str,
    *,
    credential: bool = True,
    credential_secret: bool = True,
    invitee: Invitee | None = None,
    retries: int = 2,
    timeout_seconds: int = 86400,
    rclone: RcloneOptions | None = None,
    name: str | None = None,
) -> str:
    """Create a transfer copying `source:source_path` to `destination:destination_path`.

    `credential_secret=False` references the credential Secret but leaves it to the test
    (`add_credential`): until then the mover pod cannot start."""
    name = name or f"dt-{uuid.uuid4().hex[:12]}"
    spec = DataTransferSpec(
        source=f"src:{source_path}",
        destination=f"dst:{destination_path}",
        remotes=[
            remote("src", source, with_secrets=True),
            remote("dst", destination, with_secrets=False),
        ],
        rclone=rclone,
        credentials_ref=CredentialsRef(
            remotes=api.remotes_secret_name(name) if source.secret_options else None,
            credential=api.credential_secret_name(name) if credential else None,
        ),
        invite=Invite(invitee=invitee) if invitee else None,
        requester=Requester(user="alice", groups=["physics"]),
        retries=retries,
        timeout_seconds=timeout_seconds,
    )
    body = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "name": name,
            "annotations": {api.ANNOTATION_CREATED: dt.datetime.now(dt.UTC).isoformat()},
        },
        "spec": spec.dump(),
    }
    custom = client.CustomObjectsApi(namespace.api)
    created: dict[str, Any] = custom.create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace.name, api.PLURAL, body
    )
    if source.secret_options:
        secrets = {api.remote_secret_key("src", k): v for k, v in source.secret_options.items()}
        _secret(namespace, api.remotes_secret_name(name), created, secrets)
    if credential and credential_secret:
        add_credential(namespace, name, destination.credential, created)
    return name


def add_credential(
    namespace: Namespace, name: str, credential: str, owner: dict[str, Any] | None = None
) -> None:
    """The transfer's credential Secret, owned by the transfer."""
    _secret(
        namespace,
        api.credential_secret_name(name),
        owner or namespace.get(name),
        {api.SECRET_KEY_CREDENTIAL: credential},
    )


def accept(namespace: Namespace, name: str, credential: str) -> None:
    """What the bridge does on AcceptInvite (after checking the token)."""
    add_credential(namespace, name, credential)
    namespace.patch_spec(
        name,
        {
            "invite": {"response": "Accepted"},
            "credentialsRef": {"credential": api.credential_secret_name(name)},
        },
    )


def decline(namespace: Namespace, name: str) -> None:
    namespace.patch_spec(name, {"invite": {"response": "Declined"}})


def destroy(namespace: Namespace, name: str) -> None:
    namespace.patch_spec(name, {"cancelRequested": True, "destroyRequested": True})
