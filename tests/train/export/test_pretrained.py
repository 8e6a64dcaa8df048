"""`onyx export --pretrained efficientnet_lite0`: the ImageNet classifier served as is gives the
reference pipeline's probabilities (timm's eval transform + the torch model) on real photos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from onyx.cli import main
from onyx.client.classifier import Client
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.train.tasks.image.weights import imagenet_categories
from tests.train.photos import real_photos

pytestmark = pytest.mark.slow  # an ONNX export of Lite0 (~15 s) and a server


def test_imagenet_labels_are_torchvisions() -> None:
    import torchvision

    expected = list(torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"])
    assert imagenet_categories() == expected
    assert len(set(expected)) == 1000


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """JPEGs of real photos, landscape and portrait."""
    root = tmp_path_factory.mktemp("photos")
    paths = []
    for name, photo in real_photos().items():
        for suffix, image in (("", photo), ("-portrait", photo.transpose(Image.ROTATE_90))):
            path = root / f"{name}{suffix}.jpg"
            image.save(path, quality=92)
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    repository = tmp_path_factory.mktemp("models")
    args = ["export", "--pretrained", "efficientnet_lite0", "-n", "lite0", "-r", str(repository)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "published lite0 version 1" in result.output
    config = ServerConfig(repository=repository, host="127.0.0.1", port=0)
    with ServerThread(config) as server:
        yield server.address


def reference_probabilities(paths: list[Path]) -> np.ndarray:
    """The pipeline the weights were made with: timm's eval transform, the torch model."""
    import timm
    from timm.data import create_transform, resolve_data_config

    from onyx.train.tasks.image.models import get_model

    model = get_model("efficientnet_lite0", 1000, weights="imagenet").eval()
    transform = create_transform(**resolve_data_config({}, model=timm.create_model(
        "tf_efficientnet_lite0", pretrained=False)))  # fmt: skip
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        return torch.softmax(model(batch), 1).numpy()


def test_served_top5_equals_the_reference_pipeline(served: str, photos: list[Path]) -> None:
    expected = reference_probabilities(photos)
    names = imagenet_categories()
    with Client(served) as client:
        response = client.classify_images("lite0", photos, top_k=5)
    worst = 0.0
    for path, result, probs in zip(photos, response.results, expected, strict=True):
        top5 = np.argsort(-probs)[:5]
        assert [c.index for c in result.classes] == top5.tolist(), path.name
        assert [c.label for c in result.classes] == [names[i] for i in top5]
        served_scores = np.array([c.score for c in result.classes])
        worst = max(worst, float(np.abs(served_scores - probs[top5]).max()))
    assert worst <= 1e-4, worst


def test_classify_command_prints_the_reference_top5(served: str, photos: list[Path]) -> None:
    cat = next(p for p in photos if p.name == "cat.jpg")
    result = CliRunner().invoke(main, ["classify", "--model", "lite0", str(cat), "-k", "5",
                                       "-s", served])  # fmt: skip
    assert result.exit_code == 0, result.output
    top5 = np.argsort(-reference_probabilities([cat])[0])[:5]
    names = imagenet_categories()
    lines = [line for line in result.output.splitlines() if f"#{top5[0]}" in line or "." in line]
    shown = " ".join(lines)
    positions = [shown.index(f"{names[i]}") for i in top5]
    assert positions == sorted(positions), result.output
