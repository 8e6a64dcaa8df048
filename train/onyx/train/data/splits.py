"""The one stratified train/validation split, for image samples and text examples alike.

train, val = stratified_split(samples, val_fraction=0.2, seed=0)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Labelled(Protocol):
    @property
    def label(self) -> int | str: ...


T = TypeVar("T", bound=Labelled)


class SplitError(ValueError):
    """The data cannot be split as asked (a class too small, a fraction out of range)."""


def _order(label: int | str) -> tuple[int, str]:
    """Class indices sort as numbers, label names as text."""
    return (label, "") if isinstance(label, int) else (0, label)


def stratified_split(items: Sequence[T], val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """Hold out `val_fraction` of every label (at least one item each), reproducibly."""
    if not 0 < val_fraction < 1:
        raise SplitError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = random.Random(seed)
    train: list[T] = []
    val: list[T] = []
    for label in sorted({item.label for item in items}, key=_order):
        members = [item for item in items if item.label == label]
        rng.shuffle(members)
        count = max(1, round(len(members) * val_fraction))
        if count >= len(members):
            raise SplitError(f"label {label!r} has {len(members)} items: too few to split")
        val += members[:count]
        train += members[count:]
    return train, val
