"""JSON log lines, one object per line, for the cluster's log collector.

Nothing secret is ever passed to a logger (tokens, credentials, request bodies and
metadata are not logged), so the formatter has nothing to scrub.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

FIELDS = ("transfer", "user", "method", "code", "duration_ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
