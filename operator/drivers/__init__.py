"""The transfer mechanisms, by the `driver` a request names."""

from __future__ import annotations

from datatx_operator import models
from datatx_operator.drivers.base import Driver
from datatx_operator.drivers.filesender import FileSenderDriver
from datatx_operator.drivers.fts import FtsDriver
from datatx_operator.drivers.rclone import RcloneDriver
from datatx_operator.drivers.rucio import RucioDriver

DRIVERS: dict[models.Driver, type[Driver]] = {
    models.Driver.RCLONE: RcloneDriver,
    models.Driver.FTS: FtsDriver,
    models.Driver.RUCIO: RucioDriver,
    models.Driver.FILESENDER: FileSenderDriver,
}
