"""The model registry: every architecture, its head, its stages, and where weights come from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.config import AugmentConfig, ImageTrainConfig
from onyx.train.tasks.image.models import (
    backbone_stages,
    get_model,
    head_module,
    list_models,
    model_entry,
)
from onyx.train.tasks.image.preprocessing import image_preprocessing
from onyx.train.tasks.image.weights import torch_hub_file
from tests.train.conftest import write_shapes

ALL = [
    "efficientnet_b0",
    "efficientnet_lite0",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "resnet18",
    "resnet34",
    "resnet50",
    "small_cnn",
]


def test_registry_lists_every_model_and_rejects_unknown_names() -> None:
    assert list_models() == ALL
    with pytest.raises(ValueError, match="choose one of: efficientnet_b0, "):
        get_model("vgg16", 3)


@pytest.mark.parametrize("name", ALL)
def test_head_replaced_and_stages_cover_every_parameter(name: str) -> None:
    model = get_model(name, 5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    head = {id(p) for p in head_module(name, model).parameters()}
    stages = {
        id(p)
        for stage in backbone_stages(name, model)
        for module in stage
        for p in module.parameters()
    }
    assert head.isdisjoint(stages)
    assert head | stages == {id(p) for p in model.parameters()}


def test_grayscale_input_keeps_the_rgb_response() -> None:
    torch.manual_seed(0)
    rgb = get_model("resnet18", 4).eval()
    gray = get_model("resnet18", 4, in_channels=1).eval()
    gray.load_state_dict(
        {
            k: (v.sum(1, keepdim=True) if k == "conv1.weight" else v)
            for k, v in rgb.state_dict().items()
        }
    )
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)


def test_missing_torchvision_weights_say_where_to_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert torch_hub_file("resnet18") == expected
    with pytest.raises(FileNotFoundError) as error:
        get_model("resnet18", 3, weights="imagenet")
    message = str(error.value)
    assert str(expected) in message and "https://download.pytorch.org/models/" in message


def test_cached_torchvision_weights_load_and_their_preprocessing_is_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for the published file, at the path torch's hub cache uses.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    published = model_entry("resnet18").build(3).state_dict()
    torch_hub_file("resnet18").parent.mkdir(parents=True)
    torch.save(published, torch_hub_file("resnet18"))
    model = get_model("resnet18", 3, weights="imagenet")
    assert torch.equal(
        model.state_dict()["layer1.0.conv1.weight"], published["layer1.0.conv1.weight"]
    )
    spec = image_preprocessing(ImageTrainConfig(data=".", model="resnet18", weights="imagenet"))
    assert (spec.resize_shorter, spec.crop_height) == (256, 224)
    assert list(spec.mean) == pytest.approx([0.485, 0.456, 0.406])
    assert spec.interpolation == pb.INTERPOLATION_BILINEAR
    # Trained at 32 px, the weights' 256/224 resize ratio is kept, and all of it is exported.
    from onyx.train.engine.loop import fit
    from onyx.train.export import ExportConfig, export_checkpoint
    from onyx.train.tasks.registry import task_for

    data = write_shapes(tmp_path / "data", 4, classes=("a", "b"))
    result = fit(
        task_for(
            ImageTrainConfig(
                data=str(data),
                out_dir=str(tmp_path / "run"),
                model="resnet18",
                weights="imagenet",
                image_size=32,
                epochs=1,
                max_steps=1,
                augment=AugmentConfig.off(),
            )
        )
    )
    (tmp_path / "work").mkdir()
    exported = export_checkpoint(
        ExportConfig(result.best_checkpoint, "r18", tmp_path / "models"), tmp_path / "work"
    )
    image = exported.config.image
    assert (image.resize_shorter, image.crop_height) == (37, 32)
    assert list(image.std) == pytest.approx([0.229, 0.224, 0.225])


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_path_loads_strictly(tmp_path: Path, suffix: str) -> None:
    source = get_model("small_cnn", 1000)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    model = get_model("small_cnn", 4, weights=str(path))
    assert torch.equal(model.state_dict()["features.0.0.weight"], state["features.0.0.weight"])
    assert model.classifier[2].out_features == 4
    with pytest.raises(RuntimeError):  # strict: a state dict of another architecture fails
        get_model("resnet18", 4, weights=str(path))


def test_lite0_weights_path_in_the_original_layout() -> None:
    from onyx.train.tasks.image.lite0 import lite0_weights_file

    model = get_model("efficientnet_lite0", 2, weights=str(lite0_weights_file()))
    reference = get_model("efficientnet_lite0", 2, weights="imagenet")
    assert torch.equal(
        model.state_dict()["blocks.6.0.conv_pwl.weight"],
        reference.state_dict()["blocks.6.0.conv_pwl.weight"],
    )
