"""Architecture rules: the rooms (docs/architecture.md) and which way their imports go.

- The serving distribution never imports torch nor `onyx.train`, directly or indirectly; a fresh
  environment with only `serve/` installed serves without torch.
- The contract and the settings import neither the server nor the client; the client never
  imports the server nor ONNX Runtime.
- Training takes from the serving distribution only what the two sides share (contract,
  settings, client, proto); only the demo, which serves what it trained, imports the server.
  The training engine is generic: it imports no concrete task (`onyx.train.tasks`).
- Inside the server: execution (`onyx.serve.execution`) imports nothing of the server outside
  itself; the data plane never imports a front end (only `onyx.serve.server` wires them); the
  batcher imports neither gRPC nor ONNX Runtime; model outputs travel by name, so the runtime
  and the pipeline know nothing of explanations.
- REST calls the data plane with no protobuf message between: its modules and the data plane's
  request and answer types import no protobuf module.
- Errors are gRPC-free; `onyx.serve.frontends.rpc` alone turns them into gRPC status codes.
- The server's configuration (`onyx.serve.config`) reads without ONNX Runtime or the server.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.checkout import modules_loaded_by
from tests.serve.tiny_models import LABELS, png_bytes, write_image_model

ROOT = Path(__file__).resolve().parent.parent
SERVE_DIST = ROOT / "serve"
SERVE_PACKAGES = SERVE_DIST / "onyx"
SERVER = SERVE_PACKAGES / "serve"
TRAIN_PACKAGE = ROOT / "train" / "onyx" / "train"
FORBIDDEN = ("torch", "torchvision", "onyx.train")
# What training may import from the serving distribution (outside the demo).
SHARED_WITH_TRAINING = ("onyx.contract", "onyx.settings", "onyx.client", "onyx.proto")


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports; `from a import b` counts as `a` and `a.b` (b may be one)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _serving_modules() -> list[str]:
    """Every importable module of the serving distribution except the generated stubs."""
    modules = []
    for path in sorted(SERVE_PACKAGES.rglob("*.py")):
        parts = path.relative_to(SERVE_DIST).with_suffix("").parts
        if "proto" in parts:
            continue
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_serving_sources_do_not_import_torch_or_train() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in SERVE_PACKAGES.rglob("*.py")
        for name in _imported_modules(path)
        if _is_under(name, FORBIDDEN)
    }
    assert not offenders, offenders


def test_serving_distribution_declares_no_torch() -> None:
    text = (SERVE_DIST / "pyproject.toml").read_text()
    assert "torch" not in text.split("[project.scripts]")[0].split("dependencies")[1]


def _imports_under(folder: Path, prefixes: tuple[str, ...], skip: str = "") -> set[str]:
    """`file: module` for each import of a module under `prefixes` in the files below `folder`
    (files under its subfolder `skip` left out)."""
    return {
        f"{path.relative_to(ROOT)}: {name}"
        for path in folder.rglob("*.py")
        if not (skip and (folder / skip) in path.parents)
        for name in _imported_modules(path)
        if _is_under(name, prefixes)
    }


def test_training_imports_no_server_module_outside_the_demo() -> None:
    assert _imports_under(TRAIN_PACKAGE, ("onyx.serve",), skip="demo") == set()


def test_the_demo_is_the_only_training_room_that_runs_a_server() -> None:
    # The rule above is not vacuous: the demo does import the server.
    assert _imports_under(TRAIN_PACKAGE / "demo", ("onyx.serve",))


def test_the_training_engine_imports_no_concrete_task() -> None:
    assert _imports_under(TRAIN_PACKAGE / "engine", ("onyx.train.tasks",)) == set()


def test_the_engine_rule_sees_the_tasks_imports() -> None:
    # Not vacuous: the registry, beside the engine, does import the concrete tasks.
    assert _imports_under(TRAIN_PACKAGE / "tasks", ("onyx.train.tasks",))


def test_training_imports_only_the_shared_serving_rooms_outside_the_demo() -> None:
    serving = {
        found
        for found in _imports_under(TRAIN_PACKAGE, ("onyx",), skip="demo")
        if not _is_under(found.split(": ")[1], ("onyx.train", *SHARED_WITH_TRAINING))
    }
    assert serving == set()


def test_the_contract_and_settings_import_neither_server_nor_client() -> None:
    for room in ("contract", "settings"):
        found = _imports_under(SERVE_PACKAGES / room, ("onyx.serve", "onyx.client", "onyx.bench"))
        assert found == set(), found


def test_the_client_never_imports_the_server() -> None:
    assert _imports_under(SERVE_PACKAGES / "client", ("onyx.serve", "onnxruntime")) == set()


def test_execution_imports_nothing_of_the_server_outside_itself() -> None:
    found = _imports_under(SERVER / "execution", ("onyx.serve",))
    outside = {f for f in found if not f.split(": ")[1].startswith("onyx.serve.execution")}
    assert outside == set(), outside
    # Not vacuous: the rule sees execution's imports of its own modules.
    assert any(": onyx.serve.execution." in f for f in found)


def test_the_data_plane_never_imports_a_front_end() -> None:
    # The wiring (server, workers, the `onyx serve` command) is the only part that may.
    wiring = {"server.py", "workers.py", "cli.py"}
    data_plane = [
        path
        for path in SERVER.rglob("*.py")
        if "frontends" not in path.relative_to(SERVER).parts and path.name not in wiring
    ]
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in data_plane
        for name in _imported_modules(path)
        if _is_under(name, ("onyx.serve.frontends",))
    }
    assert found == set(), found
    assert any(
        _is_under(n, ("onyx.serve.frontends",)) for n in _imported_modules(SERVER / "server.py")
    )


def test_batcher_imports_no_transport_or_runtime() -> None:
    names = _imported_modules(SERVER / "batching.py")
    assert not {n for n in names if _is_under(n, ("grpc", "onnxruntime", "onyx.proto"))}, names


def test_runtime_and_pipeline_import_no_explanation_module() -> None:
    """Outputs travel by name (`onyx.serve.execution.interface.Outputs`): whoever explains
    reads the feature map itself, nothing packs it for them on the way."""
    explaining = ("onyx.serve.explain", "onyx.contract.gradcam")
    for path in (SERVER / "execution" / "runtime.py", SERVER / "pipeline.py"):
        names = _imported_modules(path)
        assert not {n for n in names if _is_under(n, explaining)}, (path, names)
    # Not vacuous: the rule sees `from onyx.contract import gradcam`, as explanations import it.
    assert "onyx.contract.gradcam" in _imported_modules(SERVER / "explain" / "classify.py")


def test_rest_and_the_data_planes_values_import_no_protobuf_module() -> None:
    protobuf = ("onyx.proto", "google.protobuf", "grpc")
    rest = [SERVER / "frontends" / "rest.py", SERVER / "frontends" / "rest_tensors.py"]
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in [*rest, SERVER / "protocol.py"]
        for name in _imported_modules(path)
        if _is_under(name, protobuf)
    }
    assert found == set(), found


def test_only_rpc_maps_errors_to_grpc_status_codes() -> None:
    names = _imported_modules(SERVE_PACKAGES / "contract" / "errors.py")
    assert not any(_is_under(n, ("grpc",)) for n in names), names
    mapping = {
        str(path.relative_to(SERVE_PACKAGES))
        for path in SERVE_PACKAGES.rglob("*.py")
        if "grpc.StatusCode[" in path.read_text()
    }
    assert mapping == {"serve/frontends/rpc.py"}


def test_the_configuration_imports_no_runtime_nor_server() -> None:
    loaded = modules_loaded_by("onyx.serve.config")
    assert "onyx.serve.config" in loaded
    heavy = ("onnxruntime", "grpc", "onyx.serve.execution.runtime", "onyx.serve.repository")
    assert sorted(m for m in loaded if _is_under(m, heavy)) == []


def test_serve_imports_with_torch_unavailable() -> None:
    # Block torch for real, then import every serving module in a fresh interpreter.
    script = (
        "import sys\n"
        "for name in ('torch', 'torchvision'):\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        f"for module in {[*_serving_modules()]!r}:\n"
        "    __import__(module)\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_serve_alone_installs_and_runs_without_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only what the new virtualenv installed: no checkout on the path of its processes.
    monkeypatch.delenv("PYTHONPATH", raising=False)
    # A new virtualenv with only serve/ installed (from the registry, as a user would).
    # Built from a copy: an in-tree build would leave build/ in the checkout.
    source = shutil.copytree(
        SERVE_DIST,
        tmp_path / "serve",
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # The development checkout on PYTHONPATH (serve/ and train/) would leak into the new venv.
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", source],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    check = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('torch') is None, 'torch is installed'\n"
        "assert importlib.util.find_spec('onyx.train') is None, 'onyx.train is installed'\n"
        f"for module in {_serving_modules()!r}:\n"
        "    __import__(module)\n"
    )
    imported = subprocess.run(
        [python, "-c", check], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert imported.returncode == 0, imported.stderr
    onyx = env_dir / "bin" / "onyx"
    _serve_classify_and_bench(onyx, tmp_path)
    top = subprocess.run([onyx, "--help"], capture_output=True, text=True, check=False)
    assert top.returncode == 0 and "pip install ./train" in top.stdout, top.stdout
    train = subprocess.run([onyx, "train"], capture_output=True, text=True, check=False)
    assert train.returncode == 2 and "pip install ./train" in train.stderr, train.stderr


def _serve_classify_and_bench(onyx: Path, tmp_path: Path) -> None:
    """The serve-only install serves a model, classifies an image through it and benchmarks it."""
    repository = tmp_path / "models"
    write_image_model(repository)
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes())
    server = subprocess.Popen(
        [onyx, "serve", "--repository", repository, "--host", "127.0.0.1", "--port", "0",
         "--metrics-port", "0"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = _reported_port(server)
        classify = ["classify", "-m", "tiny", "-s", f"127.0.0.1:{port}", "--json", str(image)]
        done = subprocess.run(
            [onyx, *classify], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)[0]["classes"][0]["label"] in LABELS, done.stdout
    finally:
        server.terminate()
        server.wait(30)
        assert server.stderr is not None
        server.stderr.close()
    bench = ["bench", "-m", "tiny", "-r", str(repository), "-c", "1", "--duration", "1", "--json"]
    done = subprocess.run([onyx, *bench], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def _reported_port(server: subprocess.Popen[str]) -> int:
    assert server.stderr is not None
    for line in server.stderr:
        found = re.search(r"serving .* on 127\.0\.0\.1:(\d+)", line)
        if found:
            return int(found.group(1))
    raise AssertionError(f"onyx serve exited with {server.wait(10)} before serving")
