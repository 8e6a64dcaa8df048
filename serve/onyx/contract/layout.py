"""The model repository on disk: where each file lives, version numbering, reading descriptions.

    <repo>/
      <model>/
        config.pbtxt        ModelConfig: serving policy (batching, version policy, instances)
        1/
          model.onnx
          model.pbtxt       VersionConfig: labels, tensors, preprocessing, tokenizer, provenance
          vocab.txt         (text models) the vocabulary named by model.pbtxt
          export.json       (published by training) how it was exported, from which run
        2/ ...

Versions are immutable: publishing adds a folder (renamed into place whole) and changes nothing
else. Only folders named by ASCII digits are versions ("12"; not "01", "v2" nor "²"); hidden ones
(e.g. `.staging-*`) are skipped silently, any other is skipped with a warning (`ignored_folders`).

Every file a model is read from stays inside its folder: config.pbtxt in the model folder, the
rest in the version folder (`inside` resolves symlinks and refuses `..` and absolute paths), so a
config can never make the server read, or quote, a file elsewhere on the machine.

Training (publish, evaluate) and the bench import this module to find files without pulling in the
server: it imports only the standard library, the generated protobuf stubs and `model_config`
(itself protobuf-only); `tests/contract/test_layout.py` keeps it that way.

    versions = version_numbers(repo / "pets")                      # [1, 2]
    config = version_config(repo / "pets", versions[-1])           # effective ModelConfig of v2
"""

from __future__ import annotations

import os
from pathlib import Path

from onyx.contract.errors import ConfigError
from onyx.contract.model_config import (
    effective_config,
    load_config,
    load_version_config,
    validate_config,
)
from onyx.proto.v1 import model_config_pb2 as pb

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.onnx"
VERSION_CONFIG_FILE = "model.pbtxt"


def is_version_name(text: str) -> bool:
    """A version number as written: ASCII digits without leading zeros ("0", "12"; not "01",
    "²" nor other Unicode digits, which `str.isdigit` accepts)."""
    return text.isascii() and text.isdigit() and text == str(int(text))


def version_numbers(model_dir: Path) -> list[int]:
    """Version folders of a model (positive integer names), ascending."""
    if not model_dir.is_dir():
        return []
    names = [p.name for p in model_dir.iterdir() if p.is_dir() and is_version_name(p.name)]
    return sorted(n for n in map(int, names) if n > 0)


def ignored_folders(model_dir: Path) -> list[str]:
    """Folders of a model that are not versions and not hidden (an operator's mistake to warn
    about: "v2", "01", "²", "0")."""
    if not model_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in model_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".")
        and not (is_version_name(p.name) and int(p.name) > 0)
    )  # fmt: skip


def inside(path: Path, folder: Path, what: str) -> Path:
    """`path` with symlinks resolved, refusing it when it lies outside `folder` (never quoting
    where it leads)."""
    resolved = Path(os.path.realpath(path))
    if not resolved.is_relative_to(os.path.realpath(folder)):
        raise ConfigError(f"{path} ({what}) leads outside {folder}; refused")
    return resolved


def next_version(model_dir: Path) -> int:
    existing = version_numbers(model_dir)
    return (existing[-1] + 1) if existing else 1


def version_dir(model_dir: Path, version: int) -> Path:
    return model_dir / str(version)


def model_file(model_dir: Path, version: int) -> Path:
    return version_dir(model_dir, version) / MODEL_FILE


def read_model_config(model_dir: Path) -> pb.ModelConfig:
    """A model's config.pbtxt, which must be a file inside the model folder."""
    path = model_dir / CONFIG_FILE
    inside(path, model_dir, "model config")
    return load_config(path)


def read_version_config(folder: Path) -> pb.VersionConfig | None:
    """A version folder's own description, or None when it has none (an older repository)."""
    path = folder / VERSION_CONFIG_FILE
    if not path.is_file() and not path.is_symlink():
        return None
    inside(path, folder, "version config")
    return load_version_config(path)


def describe_version(model: pb.ModelConfig, folder: Path) -> pb.ModelConfig:
    """The validated config the version in `folder` is served with: the model's config
    combined with the version's model.pbtxt (or, without one, the model's per-version fields)."""
    own = read_version_config(folder)
    if own is None and model.task == pb.TASK_UNSPECIFIED:
        # config.pbtxt holds only serving policy (the current layout): nothing describes the
        # version, and one missing file says so better than a list of every empty field.
        raise ConfigError(f"{folder / VERSION_CONFIG_FILE} is missing")
    config = effective_config(model, own)
    validate_config(config, str(folder))
    return config


def version_config(model_dir: Path, version: int) -> pb.ModelConfig:
    """`describe_version` straight from the files: config.pbtxt and the version's model.pbtxt."""
    model = read_model_config(model_dir)
    return describe_version(model, version_dir(model_dir, version))
