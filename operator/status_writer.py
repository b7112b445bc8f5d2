"""What the mover writes into its transfer's status: `progress` while it runs, `lastRun` (the
run's report) once at the end. Both are JSON merge patches on the status subresource, the
only write the mover's RBAC allows.

The patches carry every field of the model, unset ones as null: in a merge patch null
removes a field, so an ETA that no longer applies or a checksum of an earlier run does not
linger next to the new figures.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from datatx_operator.kube import Kube
from datatx_operator.models import Progress, RunReport

log = logging.getLogger(__name__)

PATCH_TIMEOUT_SECONDS = 10.0


def progress_patch(progress: Progress) -> dict[str, Any]:
    """The status fields for the figures so far."""
    return {"progress": progress.model_dump(mode="json", by_alias=True)}


def report_patch(report: RunReport, progress: Progress) -> dict[str, Any]:
    """The status fields for the end of a run: its report and its last figures."""
    return {**progress_patch(progress), "lastRun": report.model_dump(mode="json", by_alias=True)}


class StatusWriter:
    """Writes one transfer's status; a failed write is logged, never fatal to the copy."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name

    async def progress(self, progress: Progress) -> bool:
        return await self._patch(progress_patch(progress))

    async def finish(self, report: RunReport, progress: Progress) -> bool:
        return await self._patch(report_patch(report, progress))

    async def _patch(self, fields: dict[str, Any]) -> bool:
        try:
            await asyncio.wait_for(
                self.kube.patch_status(self.namespace, self.name, fields), PATCH_TIMEOUT_SECONDS
            )
        except Exception as error:  # the API server may be away for a while; go on
            status = getattr(error, "status", None)
            log.warning(
                "could not write the status: %s%s",
                type(error).__name__,
                f" (HTTP {status})" if status else "",
            )
            return False
        return True
