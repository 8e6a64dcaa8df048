"""Grad-CAM in numpy, exact and without autograd, for CNNs that end in global average pooling.

The class score y_c depends on the last convolutional feature map A (K, h, w) only through its
spatial mean p = mean_ij A[:, i, j], so dy_c/dA_k(i, j) = g_k / (h w) with g = dy_c/dp, and
Grad-CAM's channel weights (the spatial mean of that gradient) are g / (h w). The map is

    cam_c = ReLU(sum_k g_k A_k)          (the constant 1/(h w) vanishes in the [0, 1] normalisation)

and g comes in closed form from the head's weights (written by export as `head.npz`):

* linear head, y = W p + b:                             g = W[c]
* MLP head, y = W2 act(W1 p + b1) + b2 (MobileNetV3):   g = W1^T (act'(W1 p + b1) * W2[c])

The map (h, w) is upsampled bilinearly (half-pixel centres, as torch's `interpolate`) to a small
grid over the centre crop, and `crop_box` says where that crop lies on the original image.

Only numpy: serving never imports torch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onyx.proto.v1 import model_config_pb2 as pb

# The graph output export gives the feature map, named so in the config (`explain.feature_map`).
FEATURE_MAP_NAME = "feature_map"
HEAD_FILE = "head.npz"
# Longest side of the heatmap grid sent to clients (they upsample it onto the image).
GRID_MAX = 56


@dataclass(frozen=True)
class Head:
    """What follows the pooling: y = w act(w1 p + b1) + b, or y = w p + b when w1 is None."""

    w: np.ndarray  # (classes, hidden or K)
    b: np.ndarray  # (classes,)
    w1: np.ndarray | None = None  # (hidden, K)
    b1: np.ndarray | None = None  # (hidden,)
    activation: str = ""  # "hardswish" when w1 is set

    @property
    def channels(self) -> int:
        return int((self.w1 if self.w1 is not None else self.w).shape[1])


def save_head(head: Head, path: Path) -> None:
    arrays = {"w": head.w, "b": head.b, "activation": np.array(head.activation)}
    if head.w1 is not None and head.b1 is not None:
        arrays |= {"w1": head.w1, "b1": head.b1}
    with path.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds


def load_head(path: Path) -> Head:
    with np.load(path, allow_pickle=False) as data:
        w1, b1 = data.get("w1"), data.get("b1")
        return Head(data["w"], data["b"], w1, b1, str(data["activation"]))


@functools.lru_cache(maxsize=64)
def _cached_head(path: str, stamp: int) -> Head:  # noqa: ARG001 (stamp: a rewrite reloads)
    return load_head(Path(path))


def head_of(path: Path) -> Head:
    """The head in `path`, read once per file version."""
    return _cached_head(str(path), path.stat().st_mtime_ns)


def _hardswish_grad(x: np.ndarray) -> np.ndarray:
    # d/dx [x * relu6(x + 3) / 6]; torch's backward uses the same three pieces.
    slope: np.ndarray = np.where(x < -3.0, 0.0, np.where(x > 3.0, 1.0, (2.0 * x + 3.0) / 6.0))
    return slope


def class_gradients(head: Head, pooled: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """dy_c/dp for each c in `classes`: (m, K), given the pooled features p (K,)."""
    if head.w1 is None or head.b1 is None:
        return np.asarray(head.w[classes], dtype=np.float64)
    if head.activation != "hardswish":
        raise ValueError(f"no gradient for head activation {head.activation!r}")
    hidden = head.w1 @ pooled + head.b1  # (H,)
    slope = _hardswish_grad(hidden)  # (H,)
    return np.asarray((head.w[classes] * slope) @ head.w1, dtype=np.float64)  # (m, K)


def grad_cam(features: np.ndarray, head: Head, classes: np.ndarray) -> np.ndarray:
    """Raw (unnormalised) maps ReLU(sum_k g_k A_k) for `classes`: (m, h, w) from A (K, h, w)."""
    a = features.astype(np.float64)
    pooled = a.mean(axis=(1, 2))
    grads = class_gradients(head, pooled, classes)  # (m, K)
    maps: np.ndarray = np.maximum(np.einsum("mk,khw->mhw", grads, a), 0.0)
    return maps


def normalise(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its maximum, into [0, 1] (an all-zero map stays zero)."""
    peak = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    scaled: np.ndarray = np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
    return scaled


def interpolation_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(out, in) bilinear weights with half-pixel centres (torch `align_corners=False`)."""
    src = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    src = np.clip(src, 0.0, size_in - 1)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = src - low
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), low), 1.0 - frac)
    np.add.at(matrix, (np.arange(size_out), high), frac)
    return matrix


def resize_bilinear(maps: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(m, h, w) -> (m, rows, cols)."""
    ry = interpolation_matrix(maps.shape[1], rows)
    rx = interpolation_matrix(maps.shape[2], cols)
    resized: np.ndarray = np.einsum("rh,mhw,cw->mrc", ry, maps, rx)
    return resized


def grid_size(crop_height: int, crop_width: int) -> tuple[int, int]:
    scale = min(1.0, GRID_MAX / max(crop_height, crop_width))
    return max(1, round(crop_height * scale)), max(1, round(crop_width * scale))


@dataclass(frozen=True)
class Box:
    """The centre crop's place on the original image, in its pixels."""

    x: float
    y: float
    width: float
    height: float


def crop_box(image_width: int, image_height: int, spec: pb.ImagePreprocessing) -> Box:
    """Undo `preprocess.resize_and_crop`: where its crop came from on the original image."""
    crop_w, crop_h = spec.crop_width, spec.crop_height
    if spec.resize_shorter <= 0:
        return Box(0.0, 0.0, float(image_width), float(image_height))
    scale = spec.resize_shorter / min(image_width, image_height)
    size_w = max(crop_w, round(image_width * scale))
    size_h = max(crop_h, round(image_height * scale))
    sx, sy = size_w / image_width, size_h / image_height
    left, top = round((size_w - crop_w) / 2.0), round((size_h - crop_h) / 2.0)
    return Box(left / sx, top / sy, crop_w / sx, crop_h / sy)
