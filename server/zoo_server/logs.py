"""Structured logs: one JSON object per line on stderr.

    {"ts": "2025-01-01T12:00:00.123Z", "level": "info", "event": "serving", "port": 50051}

`log_event(logger, "name", key=value, ...)` writes one; library warnings (logger "zoo")
come out in the same format with their message under "message".
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

log = logging.getLogger("zoo_server")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.UTC)
        data: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data["event"] = record.getMessage()
            data.update(fields)
        else:
            data["logger"] = record.name
            data["message"] = record.getMessage()
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def setup(level: str = "info") -> None:
    """Send the server's and the library's logs to stderr as JSON lines (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("zoo_server", "zoo"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old.formatter, JsonFormatter):
                logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False


def log_event(event: str, level: int = logging.INFO, exc_info: Any = None, **fields: Any) -> None:
    if log.isEnabledFor(level):
        log.log(level, event, extra={"fields": fields}, exc_info=exc_info)
