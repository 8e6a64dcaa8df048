"""The on-disk layout module: light enough for training and tools, and its numbering rules.

python -m pytest tests/contract/test_layout.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onyx.contract.errors import ConfigError
from onyx.contract.layout import (
    CONFIG_FILE,
    VERSION_CONFIG_FILE,
    next_version,
    version_config,
    version_numbers,
)
from tests.checkout import modules_loaded_by
from tests.serve.tiny_models import LABELS, image_config, write_image_model, write_version

# What `layout` must not pull in: the server, its runtime, its metrics and its transport.
HEAVY = (
    "asyncio",
    "grpc",
    "numpy",
    "onnxruntime",
    "prometheus_client",
    "onyx.serve.batching",
    "onyx.serve.repository",
    "onyx.serve.version",
    "onyx.serve.execution.runtime",
    "onyx.serve.metrics",
)


def test_importing_the_layout_does_not_import_the_server() -> None:
    loaded = modules_loaded_by("onyx.contract.layout")
    assert "onyx.contract.layout" in loaded
    assert sorted(m for m in HEAVY if m in loaded) == []


def test_version_folders_are_positive_integers(tmp_path: Path) -> None:
    for name in ("1", "3", "0", ".staging-4", "notes", "10", "²", "07", "\u0661"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a folder")
    assert version_numbers(tmp_path) == [1, 3, 10]
    assert next_version(tmp_path) == 11
    assert next_version(tmp_path / "absent") == 1


def test_each_version_is_described_by_its_own_folder(tmp_path: Path) -> None:
    model_dir = write_image_model(tmp_path, "tiny", 1)
    write_version(tmp_path, "tiny", 2, config=image_config(labels=["ant", "bee", "cow"]))
    assert (model_dir / "2" / VERSION_CONFIG_FILE).is_file()
    assert "labels" not in (model_dir / CONFIG_FILE).read_text()  # policy only
    assert list(version_config(model_dir, 1).labels) == LABELS
    assert list(version_config(model_dir, 2).labels) == ["ant", "bee", "cow"]
    assert version_config(model_dir, 2).batching == image_config().batching


def test_a_version_without_its_description_is_one_clear_error(tmp_path: Path) -> None:
    model_dir = write_image_model(tmp_path, "tiny", 1)
    (model_dir / "1" / VERSION_CONFIG_FILE).unlink()
    with pytest.raises(ConfigError) as caught:
        version_config(model_dir, 1)
    assert str(caught.value) == f"{model_dir / '1' / VERSION_CONFIG_FILE} is missing"
