"""Structured logs: one JSON object per line, carrying the request id and work-row ids.

The API's middleware sets ``REQUEST_ID``; worker code sets ``WORK_ROW`` with :func:`work_row`.
Both are contextvars, so concurrent requests and actors each log their own ids.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

REQUEST_ID: ContextVar[str | None] = ContextVar("kontena_request_id", default=None)
# {"kind": "deploy", "id": "<row id>"} while a worker acts on a work row.
WORK_ROW: ContextVar[dict[str, str] | None] = ContextVar("kontena_work_row", default=None)

FORMATS = ("json", "console")
_HANDLER_NAME = "kontena"
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def work_row(kind: str, row_id: object) -> Iterator[None]:
    """Tag every log record inside the block with the work row it acts on."""
    token = WORK_ROW.set({"kind": kind, "id": str(row_id)})
    try:
        yield
    finally:
        WORK_ROW.reset(token)


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, request_id, work row and exception as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        row = WORK_ROW.get()
        if row:
            entry["work_kind"] = row["kind"]
            entry["work_row_id"] = row["id"]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, log_format: str) -> None:
    """Configure the root logger once for the process (``json`` or ``console``)."""
    if log_format not in FORMATS:
        raise ValueError(f"KONTENA_LOG_FORMAT must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(CONSOLE_FORMAT)
    )
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    # Replace only our own handler: others (a test runner's capture) stay attached.
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER_NAME] + [handler]
    root.setLevel(level.upper())
