"""Publish an exported model into the repository as the next version, atomically.

The files are assembled in a hidden staging folder inside the model's directory and renamed into
place, so a polling server sees either no new version or a complete one, never half a file.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.model_config import CONFIG_FILE, save_config
from onyx.serve.repository import MODEL_FILE, version_numbers


def next_version(model_dir: Path) -> int:
    existing = version_numbers(model_dir) if model_dir.is_dir() else []
    return (existing[-1] + 1) if existing else 1


def publish(repository: Path, config: pb.ModelConfig, files_dir: Path) -> tuple[int, Path]:
    """Copy `files_dir` (holding model.onnx and any side files) in as the next version of
    `config.name`, and write the model's config. Returns (version, path of model.onnx)."""
    if not (files_dir / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{files_dir / MODEL_FILE} does not exist")
    model_dir = repository / config.name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".staging-"))
    try:
        for path in files_dir.iterdir():
            if path.is_file():
                shutil.copy2(path, staging / path.name)
        # Config first: a new version must never be seen with a config that does not know it.
        save_config(config, model_dir / CONFIG_FILE)
        version = next_version(model_dir)
        target = model_dir / str(version)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version, target / MODEL_FILE
