"""`onyx evaluate --explain N`: the wolf-vs-husky check, and what the first convolutions learned.

    onyx evaluate runs/pets/best.pt data/pets/test --explain 4 --out eval/

gallery.png: for each true class, its N most confident correct predictions and its N most
confident mistakes, each crop (what the model saw) with the Grad-CAM map of the predicted class
over it. A model that learned the snow instead of the wolf shows it here. filters.png: the first
convolution's kernels as colour tiles. Both work for a checkpoint (torch) and for an exported
model directory (ONNX Runtime's feature map and the version's head.npz).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onyx.contract import gradcam as cam
from onyx.contract.preprocess import decode_image, preprocess_image, resize_and_crop
from onyx.train.evaluate.scoring import Evaluation, Predictor

# (B, C, H, W) preprocessed batch -> (logits (B, classes), feature maps (B, K, h, w)).
Forward = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Explainer:
    forward: Forward
    head: cam.Head
    # The first convolution's kernels (out, in, k, k), for the filters picture.
    first_filters: np.ndarray


def explainer_of(model_path: Path) -> Explainer:
    """From a checkpoint file or a model (or version) directory; ValueError if it cannot explain."""
    if model_path.is_file():
        return _torch_explainer(model_path)
    return _onnx_explainer(model_path)


def _torch_explainer(path: Path) -> Explainer:
    import torch

    from onyx.train.export import load_model
    from onyx.train.export.explainable import feature_split, head_arrays
    from onyx.train.tasks.image.models import first_conv

    model, checkpoint = load_model(path)
    split = feature_split(checkpoint["config"]["model"], model)
    if split is None:
        raise ValueError(f"{checkpoint['config']['model']} has no known feature map to explain")

    def forward(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            features = split.features(torch.from_numpy(batch))
            return split.head(features).numpy(), features.numpy()

    filters = first_conv(model).weight.detach().numpy()
    return Explainer(forward, head_arrays(split), filters)


def _onnx_explainer(path: Path) -> Explainer:
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from onyx.contract.layout import MODEL_FILE, version_config, version_numbers

    model_dir, version_dir = (path.parent, path) if path.name.isdigit() else (path, None)
    if version_dir is None:
        version_dir = model_dir / str(version_numbers(model_dir)[-1])
    config = version_config(model_dir, int(version_dir.name))
    if not config.HasField("explain"):
        raise ValueError(f"{version_dir} has no feature-map output (export it again to explain)")
    session = ort.InferenceSession(
        str(version_dir / MODEL_FILE), providers=["CPUExecutionProvider"]
    )
    names = [config.output.name, config.explain.feature_map.name]

    def forward(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, features = session.run(names, {config.input.name: batch})
        return np.asarray(logits), np.asarray(features)

    graph = onnx.load(str(version_dir / MODEL_FILE)).graph
    weights = {init.name: init for init in graph.initializer}
    conv = next(n for n in graph.node if n.op_type == "Conv" and n.input[1] in weights)
    filters = numpy_helper.to_array(weights[conv.input[1]])
    return Explainer(forward, cam.load_head(version_dir / config.explain.head_file), filters)


def pick_examples(evaluation: Evaluation, count: int) -> list[tuple[int, list[int], list[int]]]:
    """Per true class: (class, its `count` most confident correct, its `count` most confident
    mistakes), as indices into the evaluation."""
    predicted = evaluation.scores.argmax(axis=1)
    confidence = evaluation.scores.max(axis=1)
    picks = []
    for c in range(evaluation.scores.shape[1]):
        members = np.flatnonzero(evaluation.targets == c)
        ranked = members[np.argsort(-confidence[members], kind="stable")]
        correct = [int(i) for i in ranked if predicted[i] == c][:count]
        wrong = [int(i) for i in ranked if predicted[i] != c][:count]
        picks.append((c, correct, wrong))
    return picks


def crop_and_map(
    explainer: Explainer, predictor: Predictor, path: Path, target: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """(the crop the model saw as RGB uint8, the map of the predicted class over it, that class)."""
    spec = predictor.spec
    if spec is None:
        raise ValueError("explanations are drawn for image models; this one takes text")
    image = decode_image(path.read_bytes())
    x = preprocess_image(image, spec)[None]
    logits, features = explainer.forward(x)
    c = int(logits[0].argmax()) if target is None else target
    maps = cam.grad_cam(features[0], explainer.head, np.asarray([c]))
    grid = cam.normalise(cam.resize_bilinear(maps, spec.crop_height, spec.crop_width))[0]
    crop = np.asarray(resize_and_crop(image.convert("RGB"), spec))
    return crop, grid, c


def write_gallery(
    explainer: Explainer, predictor: Predictor, evaluation: Evaluation, count: int, path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = pick_examples(evaluation, count)
    rows, cols = len(picks), 2 * count
    fig, axes = plt.subplots(rows, cols, figsize=(2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    labels = predictor.labels
    for row, (c, correct, wrong) in enumerate(picks):
        axes[row][0].set_ylabel(labels[c])
        cells = [(i, True) for i in correct] + [(None, True)] * (count - len(correct))
        cells += [(i, False) for i in wrong]
        for col, (index, is_correct) in enumerate(cells):
            if index is None:
                continue
            crop, grid, predicted = crop_and_map(
                explainer, predictor, Path(evaluation.items[index])
            )
            ax = axes[row][col]
            ax.imshow(crop)
            ax.imshow(grid, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            score = evaluation.scores[index, predicted]
            colour = "green" if is_correct else "red"
            title = f"{labels[predicted]} {score:.2f}\n(true: {labels[c]})"
            ax.set_title(title, fontsize=7, color=colour)
    fig.suptitle(
        f"Per class: {count} most confident correct (green) | {count} most confident mistakes "
        "(red); map = Grad-CAM of the predicted class",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_filters(filters: np.ndarray, path: Path) -> Path:
    """The first convolution's kernels, each scaled to [0, 1] on its own, as RGB (or gray) tiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(filters)
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, kernel in enumerate(filters):
        tile = kernel.transpose(1, 2, 0)  # (k, k, in)
        low, high = tile.min(), tile.max()
        tile = (tile - low) / (high - low) if high > low else np.zeros_like(tile)
        ax = axes[i // cols][i % cols]
        if tile.shape[2] == 3:
            ax.imshow(tile, interpolation="nearest")
        else:
            ax.imshow(tile[:, :, 0], cmap="gray", interpolation="nearest")
    fig.suptitle(f"First-layer filters ({count})", fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_explanations(
    model_path: Path, predictor: Predictor, evaluation: Evaluation, count: int, out_dir: Path
) -> list[Path]:
    """gallery.png and filters.png in `out_dir`; returns them."""
    explainer = explainer_of(model_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_gallery(explainer, predictor, evaluation, count, out_dir / "gallery.png"),
        write_filters(explainer.first_filters, out_dir / "filters.png"),
    ]
