"""A DataTransfer CR as the bridge reads it: parsed once when it enters the cache.

The objects come from the Kubernetes API (the watch or a write's response); the status is
parsed with the operator's models so both sides read it the same way. A status that does
not parse (an operator of another version) is read as far as its phase.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from datatx_operator import api
from datatx_operator.drivers.base import Reason
from datatx_operator.models import DataTransferStatus, InviteResponse, Phase
from grpc_bridge.auth import owner_key

log = logging.getLogger(__name__)

ANNOTATION_OWNER_IDP = f"{api.GROUP}/owner-idp"
ANNOTATION_SHARE_ID = f"{api.GROUP}/cs3-share-id"


def _parse_status(name: str, raw: Any) -> DataTransferStatus:
    if not isinstance(raw, dict):
        return DataTransferStatus()
    try:
        return DataTransferStatus.model_validate(raw)
    except ValidationError:
        log.warning("status of %s does not parse; reading its phase only", name)
        try:
            return DataTransferStatus(phase=Phase(raw.get("phase", Phase.PENDING)))
        except ValueError:
            return DataTransferStatus()


@dataclass(frozen=True, slots=True)
class TransferRecord:
    name: str
    uid: str
    resource_version: str
    created: dt.datetime
    owner_user: str
    owner_idp: str
    owner_key: str
    request_hash: str
    share_id: str
    source: str
    destination: str
    driver: str
    restarts: int
    cancel_requested: bool
    destroy_requested: bool
    credential_ref: bool
    invite_response: InviteResponse | None
    status: DataTransferStatus
    raw: dict[str, Any]

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> TransferRecord:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        requester = spec.get("requester") or {}
        invite = spec.get("invite")
        name = str(meta.get("name", ""))
        user = str(requester.get("user", ""))
        idp = str(annotations.get(ANNOTATION_OWNER_IDP, ""))
        response = invite.get("response") if isinstance(invite, dict) else None
        return cls(
            name=name,
            uid=str(meta.get("uid", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            created=api.created_at(meta),
            owner_user=user,
            owner_idp=idp,
            owner_key=owner_key(idp, user),
            request_hash=str(labels.get(api.LABEL_REQUEST_HASH, "")),
            share_id=str(annotations.get(ANNOTATION_SHARE_ID, "")),
            source=str(spec.get("source", "")),
            destination=str(spec.get("destination", "")),
            driver=str(spec.get("driver", "rclone")),
            restarts=int(spec.get("restarts", 0) or 0),
            cancel_requested=bool(spec.get("cancelRequested", False)),
            destroy_requested=bool(spec.get("destroyRequested", False)),
            credential_ref=bool((spec.get("credentialsRef") or {}).get("credential")),
            invite_response=InviteResponse(response)
            if response in ("Accepted", "Declined")
            else None,
            status=_parse_status(name, obj.get("status")),
            raw=obj,
        )

    @property
    def phase(self) -> Phase:
        return self.status.phase

    @property
    def cancel_failed(self) -> bool:
        """The operator reported that a cancel could not stop the (remote) work."""
        return self.status.reason == Reason.CANCEL_FAILED

    def supersedes(self, other: TransferRecord) -> bool:
        """Whether this version may replace `other` in the cache. resourceVersions are
        opaque, but etcd's are integers: compare them when they are, so that a late watch
        event never undoes a newer object put there by a write (read-your-writes)."""
        if self.resource_version.isdigit() and other.resource_version.isdigit():
            return int(self.resource_version) >= int(other.resource_version)
        return True
