"""Log set-up: human-readable lines, or one JSON object per line for log collectors."""

from __future__ import annotations

import json
import logging
import time

__all__ = ["configure_logging"]


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message"}`` plus the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(fmt: str, level: str = "INFO") -> dict:
    """Configure the root logger; returns a uvicorn ``log_config`` that uses the same format."""
    handler = logging.StreamHandler()
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(JsonFormatter() if fmt == "json" else text)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own loggers propagate to the root handler instead of printing their own way
    return {"version": 1, "disable_existing_loggers": False, "loggers": {"uvicorn": {"level": level}}}
