"""Logs for log shippers: ``nostr-imagegen serve --log-format json`` writes one JSON object a
line, with the id of the job being handled when there is one::

    {"ts": "2026-12-01T10:30:00.123Z", "level": "INFO",
     "logger": "nostr_imagegen.service.activejobs",
     "message": "job 3f1c... rejected: rate limit: at most 5 jobs per minute per customer",
     "job_id": "3f1c...64 hex..."}

The job id comes from a context variable the runner sets while it handles a request and while
an engine worker runs its job (``job_context``), so every line logged on that job's behalf
carries it, whichever module logs it; asyncio tasks spawned meanwhile inherit it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Iterator

__all__ = ["JsonFormatter", "current_job_id", "job_context"]

_JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nostr_imagegen_job_id", default=None
)


def current_job_id() -> str | None:
    """The id of the job being handled in this context, or None."""
    return _JOB_ID.get()


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    """Log lines inside the block (and tasks spawned in it) carry ``job_id``."""
    token = _JOB_ID.set(job_id)
    try:
        yield
    finally:
        _JOB_ID.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ms), level, logger, message, job_id when known,
    exception when there is one. Never more than one line: newlines in messages are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        millis = int(record.msecs)
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = getattr(record, "job_id", None) or current_job_id()
        if job_id:
            entry["job_id"] = job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
