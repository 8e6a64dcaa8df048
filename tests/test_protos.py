"""The committed stubs are exactly what scripts/gen_protos.py makes from protos/."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
STUBS = ROOT / "serve"  # the stubs live in the serving distribution


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_protos"] = module
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_the_protos(tmp_path: Path) -> None:
    generated = _load_generator().generate(tmp_path)
    assert generated, "no stubs generated"
    stale = [
        str(path.relative_to(tmp_path))
        for path in generated
        if not (STUBS / path.relative_to(tmp_path)).is_file()
        or (STUBS / path.relative_to(tmp_path)).read_text() != path.read_text()
    ]
    assert not stale, f"stale stubs, run `python scripts/gen_protos.py`: {stale}"
