"""JSON-lines logging on stdout with `service`, `run_id` and `job_id` on every line, and `trace_id`/`span_id`
while a span is in progress (tracing on, shared/tracing.py)."""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from shared import tracing
from shared.redact import scrub

current_run_id: ContextVar[str | None] = ContextVar("current_run_id", default=None)
current_job_id: ContextVar[int | None] = ContextVar("current_job_id", default=None)

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "event": record.getMessage(),
            "run_id": getattr(record, "run_id", None) or current_run_id.get(),
            "job_id": getattr(record, "job_id", None) or current_job_id.get(),
        }
        if (ids := tracing.ids()) is not None:  # the span in progress: logs and traces joined by id
            line["trace_id"], line["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in line:
                line[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # A run's secrets never reach stdout, whatever a library put into a message or traceback.
        return json.dumps({k: scrub(v) if isinstance(v, str) else v for k, v in line.items()}, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiormq", "aio_pika", "asyncssh", "pymongo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
