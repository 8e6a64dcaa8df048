"""Architecture rules: onyx.serve never imports torch (nor onyx.train), directly or indirectly."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVE = ROOT / "onyx" / "serve"
FORBIDDEN = ("torch", "torchvision", "onyx.train")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_serve_sources_do_not_import_torch_or_train() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in SERVE.rglob("*.py")
        for name in _imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    }
    assert not offenders, offenders


def test_serve_imports_with_torch_unavailable() -> None:
    # Block torch for real, then import every serve module and the CLI in a fresh interpreter.
    modules = sorted("onyx.serve." + p.stem for p in SERVE.glob("*.py") if p.stem != "__init__")
    script = (
        "import sys\n"
        "for name in ('torch', 'torchvision'):\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        f"for module in {[*modules, 'onyx.cli']!r}:\n"
        "    __import__(module)\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
