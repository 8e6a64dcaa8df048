"""scripts/import_graph.py counts what it says: layers, cycles, training's imports of the server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "import_graph", ROOT / "scripts" / "import_graph.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_a_chain_a_cycle_and_an_import_of_the_server_are_counted(tmp_path: Path) -> None:
    _write(tmp_path, {
        "serve/onyx/serve/__init__.py": "",
        "serve/onyx/serve/a.py": "from onyx.serve import b\n",
        "serve/onyx/serve/b.py": "import onyx.serve.c\n",
        "serve/onyx/serve/c.py": "",
        "serve/onyx/serve/x.py": "from onyx.serve.y import f\n",
        "serve/onyx/serve/y.py": "from onyx.serve.x import g\n",
        "serve/onyx/proto/stub_pb2.py": "from onyx.serve import a\n",  # generated: left out
        "train/onyx/train/t.py": "from onyx.serve.c import h\nimport torch\n",
    })  # fmt: skip
    graph_script = _script()
    text = graph_script.report(tmp_path)
    assert text.splitlines()[0].endswith(": 6 modules, 5 imports")
    assert "import layers: 3 (server 3, training 2)" in text
    assert "cycles: 1 [['onyx.serve.x', 'onyx.serve.y']]" in text
    assert text.endswith("training -> server imports: 1")


def test_this_checkout_has_no_cycle() -> None:
    assert "\ncycles: 0\n" in _script().report(ROOT)
