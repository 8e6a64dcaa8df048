"""The one stratified split serves image samples (integer labels) and text examples (names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onyx.train.data.splits import SplitError, stratified_split
from onyx.train.tasks.image.data import Sample
from onyx.train.tasks.text.data import Example


def test_image_and_text_items_split_per_label_reproducibly() -> None:
    samples = [Sample(Path(f"{i}.png"), i % 12) for i in range(120)]
    train, val = stratified_split(samples, 0.2, seed=0)
    assert sorted({s.label for s in val}) == list(range(12))  # every class, numerically ordered
    assert len(val) == 24 and len(train) == 96
    assert stratified_split(samples, 0.2, seed=0) == (train, val)
    examples = [Example(f"t{i}", "pos" if i % 3 else "neg", f"f:{i}") for i in range(30)]
    train_e, val_e = stratified_split(examples, 0.2, seed=1)
    assert sorted(e.label for e in val_e) == ["neg", "neg", "pos", "pos", "pos", "pos"]
    assert stratified_split(examples, 0.2, seed=2) != (train_e, val_e)


def test_too_few_to_split_and_bad_fractions_are_errors() -> None:
    with pytest.raises(SplitError, match="label 'x' has 1 items: too few to split"):
        stratified_split([Example("a", "x", "f:1"), *[Example("b", "y", "f")] * 4], 0.5, 0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        stratified_split([Sample(Path("a"), 0)], 1.0, 0)
