"""The driver Job of one run: one pod per attempt, Kubernetes doing the timing.

`backoffLimit` gives the retries (with the Job controller's exponential backoff),
`activeDeadlineSeconds` the run's deadline, and the podFailurePolicy fails the Job at once
when the mover says the failure is permanent or the run was cancelled. Secrets reach the
pod only as read-only volumes.
"""

from __future__ import annotations

from typing import Any

from datatx_operator import api
from datatx_operator.drivers.base import ExitCode
from datatx_operator.models import DataTransferSpec
from datatx_operator.settings import OperatorSettings

REMOTES_MOUNT = "/var/run/datatx/remotes"
CREDENTIAL_MOUNT = "/var/run/datatx/credential"
LOCAL_MOUNT = "/var/lib/datatx/local"
TERMINATION_LOG = "/dev/termination-log"


def owner_reference(transfer: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": transfer["metadata"]["name"],
        "uid": transfer["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _secret_volume(volume: str, secret: str) -> dict[str, Any]:
    return {"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440}}


def _volumes(
    spec: DataTransferSpec, settings: OperatorSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {"medium": "Memory"}}]
    # The root filesystem is read-only; the mover's scratch space is a private tmpfs.
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": "/tmp"}]  # noqa: S108
    refs = spec.credentials_ref
    for volume, secret, path in (
        ("remotes", refs.remotes, REMOTES_MOUNT),
        ("credential", refs.credential, CREDENTIAL_MOUNT),
    ):
        if secret:
            volumes.append(_secret_volume(volume, secret))
            mounts.append({"name": volume, "mountPath": path, "readOnly": True})
    if settings.local_volume:
        volumes.append({"name": "local", **settings.local_volume})
        mounts.append({"name": "local", "mountPath": LOCAL_MOUNT})
    return volumes, mounts


def build_job(
    transfer: dict[str, Any], spec: DataTransferSpec, settings: OperatorSettings
) -> dict[str, Any]:
    name = transfer["metadata"]["name"]
    job = api.job_name(name, spec.restarts)
    labels = {
        api.LABEL_MANAGED_BY: api.MANAGED_BY,
        api.LABEL_TRANSFER: name,
        api.LABEL_ATTEMPT: str(spec.restarts),
    }
    volumes, mounts = _volumes(spec, settings)
    container = {
        "name": "mover",
        "image": settings.mover_image,
        "command": ["datatx-mover", "--driver", spec.driver.value],
        "env": [
            {"name": "DATATX_TRANSFER", "value": name},
            {"name": "DATATX_JOB", "value": job},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            *(
                [{"name": api.LOCAL_ROOT_ENV, "value": LOCAL_MOUNT}]
                if settings.local_volume
                else []
            ),
        ],
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "resources": {
            "requests": {
                "cpu": settings.mover_cpu_request,
                "memory": settings.mover_memory_request,
            },
            "limits": {"memory": settings.mover_memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    exit_codes_failing_the_job = sorted([int(ExitCode.PERMANENT), int(ExitCode.CANCELLED)])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job,
            "labels": labels,
            "ownerReferences": [owner_reference(transfer)],
        },
        "spec": {
            "backoffLimit": spec.retries,
            "activeDeadlineSeconds": spec.timeout_seconds,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": "mover",
                            "operator": "In",
                            "values": exit_codes_failing_the_job,
                        },
                    },
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.mover_service_account,
                    "terminationGracePeriodSeconds": settings.cancel_grace_seconds,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 65532},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
