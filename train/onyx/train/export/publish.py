"""Publish an exported model into the repository as the next version, atomically.

A version is immutable and describes itself: its folder holds model.onnx, model.pbtxt (labels,
tensors, preprocessing, tokenizer, provenance) and any side files (vocabulary, export.json). The
files are assembled in a hidden staging folder inside the model's directory and renamed into
place, so a polling server sees either no new version or a complete one, never half a file.
Files and folders get the modes the umask gives (usually 0644 and 0755, not mkdtemp's 0700), so
a server running as another user (the image's uid 10001) can read them.
Nothing else changes: the model's config.pbtxt (serving policy) is written only when the model
does not exist yet, so publishing v2 never changes how v1 is served (and never reloads it).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from onyx.contract.layout import CONFIG_FILE, MODEL_FILE, VERSION_CONFIG_FILE, next_version
from onyx.contract.model_config import save_config, save_version_config, split_config, umasked
from onyx.proto.v1 import model_config_pb2 as pb


def publish(repository: Path, config: pb.ModelConfig, files_dir: Path) -> tuple[int, Path]:
    """Copy `files_dir` (holding model.onnx and any side files) in as the next version of
    `config.name`, described by the per-version part of `config`; its serving policy becomes the
    model's config.pbtxt if there is none yet. Returns (version, path of model.onnx)."""
    if not (files_dir / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{files_dir / MODEL_FILE} does not exist")
    policy, description = split_config(config)
    model_dir = repository / config.name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=".staging-"))
    try:
        staging.chmod(umasked(0o777))
        for path in files_dir.iterdir():
            if path.is_file():
                shutil.copy2(path, staging / path.name)
                (staging / path.name).chmod(umasked(0o666))
        save_version_config(description, staging / VERSION_CONFIG_FILE)
        # Policy before the first version: a version must never be seen without a config.
        if not (model_dir / CONFIG_FILE).exists():
            save_config(policy, model_dir / CONFIG_FILE)
        version = next_version(model_dir)
        target = model_dir / str(version)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version, target / MODEL_FILE
