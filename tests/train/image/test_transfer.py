"""Transfer learning is real: ImageNet features beat random ones on a small real task.

Eight classes, one per real photo; training crops come from each photo's left half, validation
crops from its right half, so the head must recognise unseen parts of a scene. Same architecture,
same frozen-backbone schedule, same steps; only the weights differ. (On digits, random frozen conv
features do about as well as ImageNet ones, so digits would not prove anything.)
"""

from __future__ import annotations

from pathlib import Path

from onyx.train.config import AugmentConfig, ImageTrainConfig
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
