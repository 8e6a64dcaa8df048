"""`--lr-find`: an exponential sweep, a smoothed loss, a plot, a suggestion; the model unchanged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from onyx.cli import main
from onyx.train.config import AugmentConfig, ImageTrainConfig
from onyx.train.engine.distributed import setup
from onyx.train.engine.loop import prepare
from onyx.train.engine.lr_find import range_test, suggest_lr
from onyx.train.tasks.registry import task_for


def test_suggestion_is_the_steepest_descent() -> None:
    lrs = list(np.logspace(-6, 1, 60))
    x = np.log10(lrs)
    # Flat, a descent steepest at 1e-3, a minimum, then divergence.
    losses = list(2.0 - np.tanh((x + 3) * 2) + np.where(x > -1, (x + 1) ** 2 * 3, 0))
    assert math.isclose(math.log10(suggest_lr(lrs, losses)), -3, abs_tol=0.15)


def _config(shapes_dir: Path, out: Path) -> ImageTrainConfig:
    return ImageTrainConfig(data=shapes_dir, out_dir=out, image_size=16, batch_size=8,
                            augment=AugmentConfig.off())  # fmt: skip


def test_range_test_restores_the_model_and_stops_on_divergence(
    shapes_dir: Path, tmp_path: Path
) -> None:
    config = _config(shapes_dir, tmp_path)
    run = prepare(task_for(config), setup("cpu"))
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    result = range_test(run, 1e-5, 100.0, 60)
    after = run.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(result.lrs) < 60  # lr 100 with AdamW diverges before the end
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:], strict=False))
    assert 1e-5 < result.suggested_lr < 10


def test_cli_prints_and_saves_the_suggestion(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "image", str(shapes_dir), "--image-size", "16", "--batch-size", "8",
            "--out-dir", str(out), "--lr-find", "--log-level", "warning"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "suggested lr" in result.output
    saved = json.loads((out / "lr_find.json").read_text())
    assert f"{saved['suggested_lr']:.2g}" in result.output
    assert (out / "lr_find.png").stat().st_size > 1000
    assert not (out / "best.pt").exists()  # no training
