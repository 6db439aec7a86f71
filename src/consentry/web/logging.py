"""Structured request logs: one JSON object per line, without personal data or secrets.

A request is logged by its *path template* (``/confirm/{token}``), never its raw path, so the
confirmation and withdraw tokens that travel in URLs never reach a log file; bodies, query
strings, cookies and e-mail addresses are never logged at all.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Final

__all__ = ["ACCESS_LOGGER", "JsonFormatter", "configure_logging", "log_request"]

ACCESS_LOGGER: Final = "consentry.web.access"
_access = logging.getLogger(ACCESS_LOGGER)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message and any ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            obj.update(fields)
        if record.exc_info:
            obj["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(obj, separators=(",", ":"), default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Send ``consentry.*`` and ``uvicorn.*`` logs to stderr as JSON (``consentry serve``)."""
    import time

    JsonFormatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    # uvicorn's own messages (startup, errors with their traceback's last line) as JSON too;
    # its access log stays off (``consentry serve``): it would log raw paths with tokens.
    for name in ("consentry", "uvicorn"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def log_request(
    *, method: str, path: str, status: int, duration_ms: float, request_id: str
) -> None:
    if _access.isEnabledFor(logging.INFO):
        fields = {
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(duration_ms, 2),
            "request_id": request_id,
        }
        _access.info("request", extra={"fields": fields})
