"""Names shared by every component: the API group, labels, annotations and child names.

Child objects get deterministic names so that a restarted operator finds (adopts) what it
created before instead of creating a second one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

GROUP = "datatx.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DataTransfer"
PLURAL = "datatransfers"
SINGULAR = "datatransfer"
SHORT_NAME = "dt"
CATEGORY = "datatx"

FINALIZER = f"{GROUP}/finalizer"
KOPF_ANNOTATION_PREFIX = f"kopf.{GROUP}"

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "datatx"
LABEL_TRANSFER = f"{GROUP}/transfer"
LABEL_OWNER_HASH = f"{GROUP}/owner-hash"
LABEL_REQUEST_HASH = f"{GROUP}/request-hash"
LABEL_ATTEMPT = f"{GROUP}/attempt"
# When the bridge created the transfer, to the microsecond: creationTimestamp has whole
# seconds only, and first come, first served needs the real order.
ANNOTATION_CREATED = f"{GROUP}/created"
ANNOTATION_OWNER = f"{GROUP}/owner"
ANNOTATION_OWNER_GROUPS = f"{GROUP}/owner-groups"

# Set in mover pods when the site mounted a local volume: `local` remotes are confined to it.
LOCAL_ROOT_ENV = "DATATX_LOCAL_ROOT"

# Keys inside the transfer's Secrets.
SECRET_KEY_CREDENTIAL = "credential"  # noqa: S105 (a key name, not a secret)


def remotes_secret_name(transfer: str) -> str:
    """The Secret holding the secret options of the transfer's remotes."""
    return f"{transfer}-remotes"


def credential_secret_name(transfer: str) -> str:
    """The Secret holding the destination credential (given at creation or on accept)."""
    return f"{transfer}-credential"


def job_name(transfer: str, restarts: int) -> str:
    """One Job per run of a transfer; a RetryTransfer bumps `restarts` and gets a new Job."""
    return f"{transfer}-run{restarts}"


def remote_secret_key(remote: str, option: str) -> str:
    """Key of one secret remote option inside the remotes Secret."""
    return f"{remote}.{option}"


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def created_at(metadata: Mapping[str, Any]) -> dt.datetime:
    """The transfer's creation time: the bridge's annotation, else creationTimestamp (a
    value that does not parse, set by hand, counts as missing; naive times are UTC)."""
    annotations = metadata.get("annotations") or {}
    for value in (annotations.get(ANNOTATION_CREATED), metadata.get("creationTimestamp")):
        if not isinstance(value, str):
            continue
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            continue
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return EPOCH
