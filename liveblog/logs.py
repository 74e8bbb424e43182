"""Logging: readable lines on a terminal, one JSON object per line in production.

Nothing liveblog logs carries a token or a request body: handlers log what happened and where
(method, path, blog id), never what was sent.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import msgspec


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "pid"?, "error"?}`` on one line; an access-log
    line adds ``kind``, ``method``, ``path``, ``status``, ``duration_ms``, ``client`` and, for a
    WebSocket, ``close_code``."""

    def __init__(self, *, pid: bool = False):
        super().__init__()
        self.pid = pid

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        # The access log's fields (liveblog.access) as keys of their own, for log pipelines.
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            line.update(fields)
        if self.pid:
            line["pid"] = record.process
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line).decode()


def configure(log_format: str, *, pid: bool = False) -> None:
    """Send every logger (uvicorn's too) to stderr as ``text`` or ``json``; with ``pid`` (several
    worker processes), each line says which process logged it."""
    if log_format not in ("text", "json"):
        raise SystemExit(f"LIVEBLOG_LOG_FORMAT must be 'text' or 'json', not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(pid=pid))
    else:
        process = " [%(process)d]" if pid else ""
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s %(name)s{process}: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
