"""From raw model outputs to ranked (label, index, score) results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from onyx.proto.v1 import model_config_pb2 as pb


@dataclass(frozen=True)
class Ranked:
    label: str
    index: int
    score: float


def activate(outputs: np.ndarray, activation: int) -> np.ndarray:
    """Apply the model's output activation to a (batch, classes) array."""
    outputs = outputs.astype(np.float32, copy=False)
    if activation == pb.ACTIVATION_SOFTMAX:
        shifted = outputs - outputs.max(axis=-1, keepdims=True)  # stable for large logits
        exp = np.exp(shifted)
        return np.asarray(exp / exp.sum(axis=-1, keepdims=True))
    if activation == pb.ACTIVATION_SIGMOID:
        return np.asarray(1.0 / (1.0 + np.exp(-outputs)))
    return outputs


def top_k(scores: np.ndarray, k: int, labels: Sequence[str]) -> list[Ranked]:
    """The `k` best classes of one (classes,) score vector, best first; ties keep index order."""
    k = max(1, min(k, scores.shape[-1]))
    order = np.argsort(-scores, kind="stable")[:k]
    return [Ranked(labels[i], int(i), float(scores[i])) for i in order]
