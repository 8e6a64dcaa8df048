"""Transfer learning is real: ImageNet features beat random ones on a small real task.

Eight classes, one per real photo; training crops come from each photo's left half, validation
crops from its right half, so the head must recognise unseen parts of a scene. Same architecture,
same frozen-backbone schedule, same steps; only the weights differ. (On digits, random frozen conv
features do about as well as ImageNet ones, so digits would not prove anything.) Unfreezing
the body afterwards keeps what the head learned (BatchNorm statistics stay frozen).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onyx.train.config import AugmentConfig, ImageTrainConfig
from onyx.train.data.photos import PhotoSetSizes, build_photo_dataset
from onyx.train.engine.loop import fit
from onyx.train.tasks.registry import task_for


def linear_probe(data: Path, out: Path, weights: str) -> float:
    config = ImageTrainConfig(
        data=str(data),
        out_dir=str(out),
        model="efficientnet_lite0",
        weights=weights,
        image_size=64,
        resize_shorter=0,
        epochs=2,
        batch_size=16,
        lr=3e-3,
        freeze_epochs=2,
        unfreeze=0,
        augment=AugmentConfig.off(),
        seed=0,
    )
    return fit(task_for(config)).best_accuracy


def test_pretrained_lite0_beats_random_init_at_the_same_budget(tmp_path: Path) -> None:
    from tests.train.photos import write_photo_crops

    data = write_photo_crops(tmp_path / "crops", train=24, val=12, size=64)
    pretrained = linear_probe(data, tmp_path / "imagenet", "imagenet")
    scratch = linear_probe(data, tmp_path / "none", "none")
    chance = 1 / 8
    assert pretrained >= 0.6, (pretrained, scratch)
    assert pretrained >= scratch + 0.25, (pretrained, scratch)
    assert pretrained > 4 * chance


@pytest.mark.slow
def test_unfreezing_pretrained_lite0_ends_no_worse_than_the_frozen_best(tmp_path: Path) -> None:
    data = build_photo_dataset(
        tmp_path / "photos", sizes=PhotoSetSizes(train=12, val=8, heldout=2, size=64)
    )
    config = ImageTrainConfig(
        data=data, out_dir=tmp_path / "run", model="efficientnet_lite0", weights="imagenet",
        image_size=64, resize_shorter=0, epochs=3, freeze_epochs=1, batch_size=16, lr=1e-3,
        augment=AugmentConfig.off(), plots=False,
    )  # fmt: skip
    history = fit(task_for(config)).history
    frozen_best = max(h["val_accuracy"] for h in history[:1])
    assert frozen_best >= 0.5, history  # ImageNet features already tell the photos apart
    assert history[-1]["val_accuracy"] >= frozen_best, history
    # Without the fix, the first unfrozen epoch's train loss jumps well above the frozen one's.
    assert history[1]["train_loss"] < history[0]["train_loss"], history
