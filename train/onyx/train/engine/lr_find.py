"""The learning-rate range test (Leslie Smith; fastai's `lr_find`): which --lr to train with.

    onyx train image data/photos --model efficientnet_lite0 --weights imagenet --lr-find
    result = lr_find(task)        # .suggested_lr; out_dir/lr_find.png, lr_find.json

Trains for at most `steps` mini-batches while the rate grows exponentially from `start_lr` to
`end_lr`, records the loss smoothed by an exponential moving average (bias-corrected, as fastai),
and stops early once the smoothed loss diverges (4x its minimum). The suggestion is the rate where
the smoothed loss falls fastest (steepest negative slope against log10(lr)), a rate at which the
model still learns quickly and safely below the divergence. The schedule's first epoch applies
(with pretrained weights: the head alone, the body frozen), every parameter group keeps its ratio
to --lr (the backbone's `backbone_lr_scale`), and the model's weights are restored afterwards:
the test changes nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from onyx.train.config import save_json
from onyx.train.engine import distributed
from onyx.train.engine.loop import Run, _step, prepare, seed_everything
from onyx.train.engine.schedule import build_optimizer, train_mode
from onyx.train.engine.task import Task

log = logging.getLogger(__name__)

# fastai's defaults.
START_LR = 1e-7
END_LR = 10.0
STEPS = 100
SMOOTHING = 0.98
DIVERGENCE = 4.0


@dataclass
class LRFindResult:
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # smoothed
    suggested_lr: float = math.nan
    plot: Path | None = None
    record: Path | None = None


def lr_find(
    task: Task,
    *,
    start_lr: float = START_LR,
    end_lr: float = END_LR,
    steps: int = STEPS,
) -> LRFindResult:
    """Run the range test on `task`'s data and model; writes lr_find.{json,png} to out_dir."""
    config = task.config
    context = distributed.setup(config.device)
    try:
        run = prepare(task, context)
        result = range_test(run, start_lr, end_lr, steps)
    finally:
        distributed.teardown(context)
    out_dir = Path(config.out_dir)
    result.record = out_dir / "lr_find.json"
    save_json({"lrs": result.lrs, "smoothed_losses": result.losses,
               "suggested_lr": result.suggested_lr}, result.record)  # fmt: skip
    if config.plots:
        result.plot = plot_lr_find(result, out_dir / "lr_find.png")
    return result


def range_test(run: Run, start_lr: float, end_lr: float, steps: int) -> LRFindResult:
    config, model = run.config, run.model
    initial = copy.deepcopy(model.state_dict())
    seed_everything(config.seed)
    run.task.start_epoch(model, 1)
    optimizer = build_optimizer(config, run.task.param_groups(model))
    ratios = [group["lr"] / config.lr for group in optimizer.param_groups]
    options = dataclasses.replace(run.options, scheduler=None, max_steps=0, show_progress=False)
    result = LRFindResult()
    average, best = 0.0, math.inf
    batches = _forever(run.loaders["train"])
    for i in range(steps):
        lr = start_lr * (end_lr / start_lr) ** (i / max(steps - 1, 1))
        for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
            group["lr"] = lr * ratio
        train_mode(model)
        inputs, targets = next(batches)
        device = run.context.device
        _, loss = _step(model, inputs.to(device), targets.to(device), optimizer, options)
        average = SMOOTHING * average + (1 - SMOOTHING) * float(loss.detach())
        smoothed = average / (1 - SMOOTHING ** (i + 1))
        result.lrs.append(lr)
        result.losses.append(smoothed)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or smoothed > DIVERGENCE * best:
            break
    model.load_state_dict(initial)  # the test changes nothing
    result.suggested_lr = suggest_lr(result.lrs, result.losses)
    log.info("lr range test: %d steps, suggested lr %.2g", len(result.lrs), result.suggested_lr)
    return result


def _forever(loader: DataLoader[Any]) -> Iterator[Any]:
    while True:
        yield from loader


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The rate of the steepest descent of the smoothed loss against log10(lr), ignoring the
    first and last few points (the average's warm-up, the divergence)."""
    skip_start, skip_end = min(10, len(lrs) // 10), min(5, len(lrs) // 10)
    window = slice(skip_start, len(lrs) - skip_end)
    x = np.log10(np.asarray(lrs[window]))
    y = np.asarray(losses[window])
    if len(x) < 3:
        return lrs[int(np.argmin(losses))] / 10 if lrs else math.nan
    slope = np.gradient(y, x)
    return float(10 ** x[int(np.argmin(slope))])


def plot_lr_find(result: LRFindResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(result.lrs, result.losses)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss (smoothed)")
    if math.isfinite(result.suggested_lr):
        axes.axvline(result.suggested_lr, color="tab:red", linestyle="--",
                     label=f"suggested {result.suggested_lr:.2g}")  # fmt: skip
        axes.legend()
    axes.set_title("learning-rate range test")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


__all__ = ["LRFindResult", "lr_find", "plot_lr_find", "range_test", "suggest_lr"]
