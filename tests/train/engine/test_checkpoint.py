"""One checkpoint schema (format 2) for both tasks; the previous release's two layouts (image
flat, text with a nested "state") still resume and export; a newer format is refused by name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from onyx.train.config import AugmentConfig, ImageTrainConfig, TextTrainConfig
from onyx.train.data.reviews import generate_reviews, write_jsonl
from onyx.train.engine.checkpoint import FORMAT, CheckpointFormatError, load_checkpoint, release
from onyx.train.engine.loop import fit
from onyx.train.export import ExportConfig, export_checkpoint
from onyx.train.tasks.registry import task_for


def image_config(data: Path, out: Path) -> ImageTrainConfig:
    return ImageTrainConfig(data=data, out_dir=out, image_size=16, epochs=1, batch_size=16,
                            max_steps=2, augment=AugmentConfig.off(), plots=False)  # fmt: skip


def as_format_1_image(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The layout the previous release's image trainer wrote: state flat at the top."""
    old = {k: v for k, v in checkpoint.items() if k not in ("format", "written_by", "state")}
    state = checkpoint["state"]
    old.update(history=state["history"], best_accuracy=state["best_accuracy"],
               bad_epochs=state["stale_epochs"])  # fmt: skip
    old["config"] = {("data_dir" if k == "data" else k): v for k, v in old["config"].items()}
    return old


def as_format_1_text(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The previous text trainer's layout: nested "state", grad_clip, no scaler."""
    old = {k: v for k, v in checkpoint.items() if k not in ("format", "written_by", "scaler")}
    old["config"] = {
        ("grad_clip" if k == "clip_grad_norm" else k): v for k, v in old["config"].items()
    }
    return old


def test_both_tasks_write_the_same_schema(shapes_dir: Path, tmp_path: Path) -> None:
    fit(task_for(image_config(shapes_dir, tmp_path / "image")))
    data = write_jsonl(generate_reviews(60, seed=0), tmp_path / "r.jsonl")
    fit(task_for(TextTrainConfig(data=data, out_dir=tmp_path / "text", epochs=1, embed_dim=4,
                                 hidden=4, plots=False)))  # fmt: skip
    common = {"format", "written_by", "task", "model", "labels", "config", "metrics", "epoch",
              "state", "optimizer", "scheduler", "scaler"}  # fmt: skip
    image = load_checkpoint(tmp_path / "image" / "last.pt")
    text = load_checkpoint(tmp_path / "text" / "last.pt")
    assert set(image) - common == {"preprocessing"}
    assert set(text) - common == {"vocabulary", "model_config", "max_length", "tokenizer"}
    for checkpoint in (image, text):
        assert checkpoint["format"] == FORMAT and checkpoint["written_by"] == release()
        assert set(checkpoint["state"]) == {"best_accuracy", "stale_epochs", "history"}


def test_previous_release_image_checkpoint_resumes_and_exports(
    shapes_dir: Path, tmp_path: Path
) -> None:
    config = image_config(shapes_dir, tmp_path / "run")
    fit(task_for(config))
    last = tmp_path / "run" / "last.pt"
    old = as_format_1_image(load_checkpoint(last))
    torch.save(old, last)
    upgraded = load_checkpoint(last)
    assert upgraded["format"] == FORMAT and upgraded["config"]["data"] == str(shapes_dir)
    assert upgraded["state"]["history"] == old["history"]
    resumed = fit(task_for(replace(config, epochs=2, resume=str(last))))
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    torch.save(old, tmp_path / "old.pt")
    exported = export_checkpoint(
        ExportConfig(checkpoint=tmp_path / "old.pt", name="old", repository=tmp_path / "models"),
        tmp_path,
    )
    assert exported.version == 1 and str(shapes_dir) in exported.config.description


def test_previous_release_text_checkpoint_exports(tmp_path: Path) -> None:
    data = write_jsonl(generate_reviews(60, seed=0), tmp_path / "r.jsonl")
    result = fit(task_for(TextTrainConfig(data=data, out_dir=tmp_path / "run", epochs=1,
                                          embed_dim=4, hidden=4, plots=False)))  # fmt: skip
    old = as_format_1_text(load_checkpoint(result.best_checkpoint))
    torch.save(old, tmp_path / "old.pt")
    upgraded = load_checkpoint(tmp_path / "old.pt")
    assert upgraded["config"]["clip_grad_norm"] == 1.0 and upgraded["scaler"] is None
    work = tmp_path / "work"
    work.mkdir()
    exported = export_checkpoint(
        ExportConfig(checkpoint=tmp_path / "old.pt", name="old", repository=tmp_path / "models"),
        work,
    )
    assert exported.config.text.max_length == 256


def test_a_newer_format_names_the_release_that_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "future.pt"
    torch.save({"format": FORMAT + 1, "written_by": "onyx-train 9.1.0", "model": {}}, path)
    with pytest.raises(CheckpointFormatError, match=r"format 3 .* onyx-train 9\.1\.0"):
        load_checkpoint(path)
