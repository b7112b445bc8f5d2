"""The transfer mechanisms, by the `driver` a request names.

A mover runs one driver, so only that driver's module is imported: the HTTP drivers pull in
httpx, which an rclone run has no use for (every import delays the start of a transfer).
"""

from __future__ import annotations

import importlib

from datatx_operator import models
from datatx_operator.drivers.base import Driver

DRIVER_CLASSES: dict[models.Driver, str] = {
    models.Driver.RCLONE: "rclone:RcloneDriver",
    models.Driver.FTS: "fts:FtsDriver",
    models.Driver.RUCIO: "rucio:RucioDriver",
    models.Driver.FILESENDER: "filesender:FileSenderDriver",
}


def driver_class(kind: models.Driver) -> type[Driver]:
    """The class of `kind`, its module imported now."""
    module, _, name = DRIVER_CLASSES[kind].partition(":")
    found: type[Driver] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return found
