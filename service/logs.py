"""Log set-up: human-readable lines, or one JSON object per line for log collectors.

No secret reaches a log line: every record passes :class:`RedactSecrets` first, which masks the
values of query parameters that carry keys (uvicorn's access and WebSocket lines print the path
with its query string, and the browser page sends its key as ``?api_key=``) and the passwords
of URLs (a Redis URL may hold one).
"""

from __future__ import annotations

import json
import logging
import re
import time

__all__ = ["RedactSecrets", "configure_logging", "redact", "redact_url"]

MASK = "***"
# a query parameter whose name says it holds a secret: api_key=..., token=..., password=...
_SECRET_PARAM = re.compile(
    r"(?i)([?&](?:[\w.-]*(?:key|token|secret|password|passwd|auth)[\w.-]*)=)[^&\s\"']*"
)
_URL_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(@)")


def redact(text: str) -> str:
    """``text`` with secret query values and URL passwords masked."""
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<2>", _SECRET_PARAM.sub(rf"\g<1>{MASK}", text))


def redact_url(url: str) -> str:
    return redact(url)


class RedactSecrets(logging.Filter):
    """Rewrites each record's message with secrets masked (on the handler: every logger passes it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


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
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own loggers propagate to the root handler instead of printing their own way
    return {"version": 1, "disable_existing_loggers": False, "loggers": {"uvicorn": {"level": level}}}
