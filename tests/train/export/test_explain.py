"""Served explanations against the truth: torch Grad-CAM (Captum's LayerGradCam) on real photos,
the closed-form MLP head, parity over the feature map, and a planted shortcut the map must reveal.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from PIL import Image

from onyx.client.classifier import Client
from onyx.contract import gradcam as cam
from onyx.contract.layout import version_config
from onyx.contract.preprocess import preprocess_image
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.background import ServerThread
from onyx.serve.config import ServerConfig
from onyx.train.export import ParityError, check_parity
from onyx.train.export.config import ExportConfig
from onyx.train.export.explainable import FeatureMapModel, feature_split, head_arrays
from onyx.train.export.onnx import write_onnx
from onyx.train.export.pipeline import export_explainable
from onyx.train.tasks.image.models import get_model
from tests.train.photos import real_photos


def export_config(repository: Path, name: str) -> ExportConfig:
    return ExportConfig(checkpoint=Path("memory"), name=name, repository=repository)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# --- the truth on real photos: ImageNet EfficientNet-Lite0 -------------------------------------


@dataclass(frozen=True)
class Lite0:
    model: torch.nn.Module
    spec: pb.ImagePreprocessing
    repository: Path


@pytest.fixture(scope="module")
def lite0(tmp_path_factory: pytest.TempPathFactory) -> Lite0:
    from onyx.train.config import ImageTrainConfig
    from onyx.train.tasks.image.preprocessing import image_preprocessing
    from onyx.train.tasks.image.weights import imagenet_categories

    root = tmp_path_factory.mktemp("lite0")
    model = get_model("efficientnet_lite0", 1000, weights="imagenet").eval()
    spec = image_preprocessing(
        ImageTrainConfig(data=".", model="efficientnet_lite0", weights="imagenet")
    )
    work = root / "work"
    work.mkdir()
    # The TorchScript exporter: the same parity check, a tenth of dynamo's time on Lite0.
    export_explainable(
        model, "efficientnet_lite0", imagenet_categories(), spec,
        export_config(root / "models", "lite0"), work, exporter="torchscript",
    )  # fmt: skip
    return Lite0(model, spec, root / "models")


@pytest.fixture(scope="module")
def lite0_server(lite0: Lite0) -> Iterator[ServerThread]:
    config = ServerConfig(repository=lite0.repository, host="127.0.0.1", port=0)
    with ServerThread(config) as server:
        yield server


def captum_map(
    model: torch.nn.Module, layer: torch.nn.Module, x: np.ndarray, c: int
) -> torch.Tensor:
    """Captum's Grad-CAM of class `c` on `layer`, at the layer's resolution: (1, 1, h, w)."""
    attribution = LayerGradCam(model, layer).attribute(
        torch.from_numpy(x), target=c, relu_attributions=True
    )  # (1, 1, h, w)
    return attribution.detach()


@pytest.mark.slow
def test_served_maps_equal_captum_layer_gradcam_on_real_photos(
    lite0: Lite0, lite0_server: ServerThread
) -> None:
    photos = real_photos()
    with Client(lite0_server.address) as client:
        for name in ("cat", "coffee", "astronaut"):
            photo = photos[name]
            response = client.classify(
                "lite0", [api.Input(image=png(photo))], top_k=1, explain=api.ExplainOptions()
            )
            result = response.results[0]
            (explanation,) = result.explanations
            heatmap = explanation.heatmap
            assert explanation.index == result.classes[0].index  # top-1 by default
            served = np.asarray(heatmap.values).reshape(heatmap.rows, heatmap.cols)
            x = preprocess_image(photo, lite0.spec)[None]
            reference = captum_map(
                lite0.model, lite0.model.get_submodule("bn2"), x, explanation.index
            )
            upsampled = F.interpolate(reference, size=served.shape, mode="bilinear").numpy()[0, 0]
            assert correlation(served, upsampled) >= 0.99, name
            assert served.min() >= 0.0 and served.max() == pytest.approx(1.0)
            # Placed on the photo as sent: the centre crop of the resized photo, mapped back.
            width, height = photo.size
            assert (heatmap.image_width, heatmap.image_height) == (width, height)
            short = min(width, height)
            side = 224 * short / 256  # the crop's side in original pixels
            assert heatmap.width == pytest.approx(side, rel=0.01)
            assert heatmap.height == pytest.approx(side, rel=0.01)
            assert heatmap.x == pytest.approx((width - side) / 2, abs=1.5)
            assert heatmap.y == pytest.approx((height - side) / 2, abs=1.5)


@pytest.mark.slow
def test_named_classes_are_explained_in_the_order_asked(lite0_server: ServerThread) -> None:
    photo = png(real_photos()["cat"])
    labels = ["tabby", "Egyptian cat", "tiger cat"]
    with Client(lite0_server.address) as client:
        options = api.ExplainOptions(labels=labels)
        response = client.classify("lite0", [api.Input(image=photo)], explain=options)
        assert [e.label for e in response.results[0].explanations] == labels
        with pytest.raises(grpc.RpcError) as error:
            client.classify(
                "lite0", [api.Input(image=photo)], explain=api.ExplainOptions(labels=["husky?"])
            )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "husky?" in str(error.value.details())


# --- the closed-form MLP head (MobileNetV3) and parity over the feature map -------------------


def test_mlp_head_maps_equal_captum_on_mobilenet_v3(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = get_model("mobilenet_v3_small", 4).eval()
    with torch.no_grad():  # hidden units on all three pieces of hardswish, not just near 0
        model.get_submodule("classifier.0").bias.normal_(0.0, 3.0)
    split = feature_split("mobilenet_v3_small", model)
    assert split is not None and split.activation == "hardswish"
    wrapped = FeatureMapModel(model, split).eval()
    path = tmp_path / "m.onnx"
    x = torch.randn(3, 3, 128, 128)
    write_onnx(wrapped, x, path, 18, "torchscript", output_names=("logits", "feature_map"))
    _, features = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})
    head = head_arrays(split)
    assert head.w1 is not None
    informative = 0
    for i in range(3):
        for c in range(4):
            ours = cam.grad_cam(features[i], head, np.asarray([c]))[0]
            reference = captum_map(model, model.get_submodule("features"), x[i : i + 1].numpy(), c)[
                0, 0
            ].numpy()
            # Captum's weights carry the 1/(h w) of the mean; ours drop it (normalised away).
            assert np.allclose(ours / ours.size, reference, rtol=1e-3, atol=1e-6)
            if ours.std() > 0:  # (a random network's ReLU map may be all zero)
                informative += 1
                assert correlation(ours, reference) >= 0.999
    assert informative >= 6


def test_parity_covers_the_feature_map(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = get_model("small_cnn", 3).eval()
    split = feature_split("small_cnn", model)
    assert split is not None
    wrapped = FeatureMapModel(model, split).eval()
    path, x = tmp_path / "m.onnx", torch.randn(2, 3, 32, 32)
    write_onnx(wrapped, x, path, 18, "torchscript", output_names=("logits", "feature_map"))
    assert check_parity(wrapped, path, [x], 1e-4, 1e-3) < 1e-4
    # Torch's feature map off by 1 % while the logits agree: parity must catch the second output.

    class OffFeatures(torch.nn.Module):
        def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits, features = wrapped(t)
            return logits, features * 1.01

    with pytest.raises(ParityError):
        check_parity(OffFeatures().eval(), path, [x], 1e-4, 1e-3)


# --- the planted shortcut: only a corner patch decides the label ("the snow") ------------------

SIZE, PATCH = 48, 20
# Saturated colours photos rarely contain: the patch is the only reliable cue.
PATCH_COLOURS = ((1.0, 0.0, 0.6), (0.0, 0.2, 1.0))


def shortcut_images(count: int, seed: int) -> tuple[list[Image.Image], np.ndarray]:
    """Crops of real photos (unrelated to the label) with the label's colour in the top-left."""
    rng = np.random.default_rng(seed)
    photos = [np.asarray(p.resize((96, 96))) for p in real_photos().values()]
    labels = rng.integers(0, 2, count)
    images = []
    for label in labels:
        photo = photos[rng.integers(len(photos))]
        top, left = rng.integers(0, 96 - SIZE, 2)
        pixels = photo[top : top + SIZE, left : left + SIZE].astype(np.float64)
        patch = np.asarray(PATCH_COLOURS[label]) * 255 + rng.normal(0, 8, (PATCH, PATCH, 3))
        pixels[:PATCH, :PATCH] = patch
        images.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return images, labels


def shortcut_spec() -> pb.ImagePreprocessing:
    return pb.ImagePreprocessing(
        resize_shorter=0, crop_height=SIZE, crop_width=SIZE,
        interpolation=pb.INTERPOLATION_BILINEAR, color_mode=pb.COLOR_MODE_RGB,
        channel_order=pb.CHANNEL_ORDER_RGB, layout=pb.LAYOUT_NCHW, mean=[0.5] * 3, std=[0.5] * 3,
    )  # fmt: skip


def train_on_shortcut(spec: pb.ImagePreprocessing) -> torch.nn.Module:
    from onyx.train.tasks.image.models import SmallCNN

    images, labels = shortcut_images(256, seed=0)
    x = torch.from_numpy(np.stack([preprocess_image(i, spec) for i in images]))
    y = torch.from_numpy(labels)
    torch.manual_seed(0)
    model = SmallCNN(2, 3, width=16)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(6):
        order = torch.randperm(len(y))
        for start in range(0, len(y), 32):
            batch = order[start : start + 32]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.mark.slow
def test_the_map_reveals_a_planted_shortcut(tmp_path: Path) -> None:
    spec = shortcut_spec()
    model = train_on_shortcut(spec)
    work = tmp_path / "work"
    work.mkdir()
    # The default path (dynamo first, parity over both outputs), as `onyx export` runs it.
    exported = export_explainable(
        model, "small_cnn", ["husky", "wolf"], spec, export_config(tmp_path / "models", "snow"),
        work,
    )  # fmt: skip
    config = version_config(tmp_path / "models" / "snow", exported.version)
    assert config.explain.feature_map.name == "feature_map"
    assert (exported.model_path.parent / config.explain.head_file).is_file()
    images, labels = shortcut_images(32, seed=1)
    server_config = ServerConfig(repository=tmp_path / "models", host="127.0.0.1", port=0)
    with ServerThread(server_config) as server, Client(server.address) as client:
        inputs = [api.Input(image=png(image)) for image in images]
        response = client.classify("snow", inputs, top_k=1, explain=api.ExplainOptions())
    predicted = np.asarray([r.classes[0].index for r in response.results])
    assert (predicted == labels).mean() >= 0.95
    masses = []
    for result in response.results:
        heatmap = result.explanations[0].heatmap
        assert (heatmap.x, heatmap.y, heatmap.width, heatmap.height) == (0, 0, SIZE, SIZE)
        grid = np.asarray(heatmap.values).reshape(heatmap.rows, heatmap.cols)
        inside = grid[: heatmap.rows * PATCH // SIZE, : heatmap.cols * PATCH // SIZE]
        masses.append(inside.sum() / grid.sum())
    # The patch is 17 % of the image; the explanation puts most of the evidence there.
    assert np.mean(masses) >= 0.6, masses
