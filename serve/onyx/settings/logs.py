"""Logging setup, called only by entry points (library modules just use getLogger(__name__)).

    configure_logging("info")                  # text, for a terminal
    configure_logging("info", "json")          # one JSON object per line, for log pipelines

A JSON line holds `time` (RFC 3339, UTC), `level`, `logger`, `message`, then every `extra=`
field given to the logging call, and `exception` (the formatted traceback) when there is one:

    {"time": "2026-11-30T23:59:01.123Z", "level": "INFO", "logger": "onyx.serve.server",
     "message": "stopped", "grace_s": 10.0}
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that JSON cannot hold (a Path, an exception) still logs.
        return json.dumps(entry, default=str, ensure_ascii=False)


def _rfc3339(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure_logging(level: str = "info", log_format: str = "text") -> None:
    """Log to stderr at `level`, as text or (log_format "json") one JSON object per line."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # The ONNX exporter's libraries narrate every pass at INFO; only their problems matter here.
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
