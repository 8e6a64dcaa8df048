"""The configs are data the CLI is generated from: every field has help text and a type the
generator handles; shared fields have one name and one default across tasks."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal

import pytest

from onyx.train.config import AugmentConfig, ImageTrainConfig, TextTrainConfig, TrainConfig

CONFIGS = (TrainConfig, ImageTrainConfig, TextTrainConfig, AugmentConfig)
# Defaults a task overrides on purpose (each with a comment in config.py saying why).
OVERRIDDEN = {"out_dir", "lr", "clip_grad_norm"}


def supported(kind: Any) -> bool:
    if kind in (bool, int, float, str, Path, AugmentConfig):
        return True
    origin = typing.get_origin(kind)
    if origin is Literal:
        return True
    if origin is tuple:
        args = typing.get_args(kind)
        return len(args) == 2 and args[1] is Ellipsis and args[0] in (str, int, float)
    return False


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_every_field_has_help_and_a_generatable_type(config: type[Any]) -> None:
    hints = typing.get_type_hints(config)
    for field in dataclasses.fields(config):
        assert field.metadata.get("help", "").strip(), f"{config.__name__}.{field.name}: no help"
        assert supported(hints[field.name]), f"{config.__name__}.{field.name}: {hints[field.name]}"


def test_shared_fields_mean_the_same_in_both_tasks() -> None:
    image = {f.name: f for f in dataclasses.fields(ImageTrainConfig)}
    text = {f.name: f for f in dataclasses.fields(TextTrainConfig)}
    for field in dataclasses.fields(TrainConfig):
        if field.name in OVERRIDDEN:
            continue
        assert image[field.name].default == text[field.name].default == field.default, field.name
    assert ImageTrainConfig(data=Path("d")).patience == TextTrainConfig(data=Path("d")).patience


def test_to_json_is_plain_json() -> None:
    config = ImageTrainConfig(data=Path("data"), mean=(0.5,), labels=("a", "b"))
    data = config.to_json()
    assert data["data"] == "data" and data["mean"] == [0.5] and data["augment"]["hflip"] is True
