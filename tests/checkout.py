"""Where this checkout's code lives, for tests that start `onyx` in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `onyx` is a namespace package over the two distributions; the checkout's come first so a
# subprocess runs this worktree's code, not whichever checkout is installed editable.
PYTHONPATH = os.pathsep.join(str(ROOT / part) for part in ("serve", "train"))


def free_port() -> int:
    """A TCP port free right now, for tools that need a number up front (torchrun's rendezvous)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def modules_loaded_by(module: str) -> set[str]:
    """Every module a fresh interpreter holds after importing `module` (this checkout's code)."""
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))
