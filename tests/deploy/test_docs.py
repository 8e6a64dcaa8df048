"""docs/deploy.md only points at files that exist and flags that `onyx serve` has (or that land
with the parts of issue 12/16 listed in test_manifests.PENDING)."""

from __future__ import annotations

import re
from pathlib import Path

from onyx.serve.cli import serve_command
from tests.deploy.test_manifests import PENDING

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deploy.md"


def test_paths_exist() -> None:
    paths = set(re.findall(r"`((?:deploy|bench|docs)/[\w./-]+?)`", DOC.read_text()))
    assert len(paths) > 5
    missing = sorted(p for p in paths if not (ROOT / p.split(":")[0]).exists())
    assert not missing, missing


def test_serve_flags_exist() -> None:
    known = {opt for param in serve_command.params for opt in param.opts}
    known |= {opt for param in serve_command.params for opt in getattr(param, "secondary_opts", [])}
    flags = set(re.findall(r"`(--[a-z][a-z-]+)", DOC.read_text()))
    flags -= {"--gpus", "--build-arg"}  # docker's
    unknown = sorted(f for f in flags if f not in known and f not in PENDING)
    assert not unknown, unknown
