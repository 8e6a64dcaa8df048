"""Old import path kept for bench/text_throughput.py only; new code imports `onyx.train.export`.
Remove once bench/ imports from `onyx.train.export` (it is outside this package's owners)."""

from __future__ import annotations

from pathlib import Path

import torch

from onyx.train.export import export_verified as _export_verified
from onyx.train.export.text import build_text_config, example_ids, parity_inputs
from onyx.train.text.models import TextClassifier

__all__ = ["build_text_config", "export_verified", "parity_inputs"]


def export_verified(
    model: TextClassifier,
    path: Path,
    opset: int,
    inputs: list[torch.Tensor],
    atol: float,
    rtol: float,
) -> tuple[str, float]:
    """`onyx.train.export.export_verified` with a text model's tracing example and axes."""
    return _export_verified(
        model,
        path,
        opset,
        inputs,
        atol,
        rtol,
        example=example_ids(model.config.vocab_size),
        time_axis=True,
        external_data=False,
    )
