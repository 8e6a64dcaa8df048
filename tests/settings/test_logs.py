"""`--log-format json`: one JSON object per line with time, level, logger, message, extras."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from onyx.settings.logs import JsonFormatter
from tests.checkout import PYTHONPATH


def _record(**extra: object) -> logging.LogRecord:
    logger = logging.getLogger("onyx.test")
    return logger.makeRecord("onyx.test", logging.WARNING, __file__, 1, "two\nlines %d", (7,),
                             None, extra=extra)  # fmt: skip


def test_json_line_has_the_fields_and_extras() -> None:
    line = JsonFormatter().format(_record(model="pets", where=Path("/models")))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "onyx.test"
    assert entry["message"] == "two\nlines 7"
    assert entry["model"] == "pets" and entry["where"] == "/models"
    assert entry["time"].endswith("Z") and entry["time"][10] == "T"
    assert "args" not in entry and "msg" not in entry  # no LogRecord internals


def test_json_line_carries_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, "f", 1, "m", (),
                                                   sys.exc_info())  # fmt: skip
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]


def test_onyx_serve_logs_json_lines(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "onyx", "serve", "--repository", str(tmp_path),
               "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0", "--log-format",
               "json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as process:
        assert process.stderr is not None
        try:
            entries = []
            for line in process.stderr:  # every line is one JSON object, up to "serving"
                entries.append(json.loads(line))
                if entries[-1]["message"].startswith("serving"):
                    break
        finally:
            process.kill()
    assert entries and entries[-1]["message"].startswith("serving"), entries
    assert {"time", "level", "logger", "message"} <= set(entries[-1])
    assert entries[-1]["logger"] == "onyx.serve.server"
