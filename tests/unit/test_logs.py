"""The JSON log lines: one object per record, with the time, the request id and the exception."""

from __future__ import annotations

import json
import logging
import re
import sys

from ledger.logs import REQUEST_ID, JsonFormatter


def record(message: str, *args: object, exc_info: object = None, **extra: object) -> logging.LogRecord:
    made = logging.getLogger("ledger.test").makeRecord(
        "ledger.test",
        logging.WARNING,
        __file__,
        1,
        message,
        args,
        exc_info,
        extra=extra,  # type: ignore[arg-type]
    )
    return made


def test_a_record_is_one_json_line_with_its_fields() -> None:
    line = JsonFormatter().format(record("paid %s", "ünï", route="/x/{id}", status=201, other="not kept"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", parsed.pop("time"))
    assert parsed == {
        "level": "warning",
        "logger": "ledger.test",
        "message": "paid ünï",
        "route": "/x/{id}",
        "status": 201,
    }


def test_the_request_id_of_the_context_and_the_exception_are_included() -> None:
    token = REQUEST_ID.set("req-42")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            line = json.loads(JsonFormatter().format(record("failed", exc_info=sys.exc_info())))
    finally:
        REQUEST_ID.reset(token)
    assert line["request_id"] == "req-42"
    assert "ValueError: boom" in line["exception"]
    assert "request_id" not in json.loads(JsonFormatter().format(record("outside a request")))
