"""What `onyx demo` prints last (the whole run is tests/test_cli.py's slow demo test)."""

from __future__ import annotations

from pathlib import Path

from onyx.train.demo.workflow import DemoResult, summary


def test_the_summary_reports_both_photo_runs_the_served_model_and_the_sentiment_model() -> None:
    result = DemoResult(
        version=2, val_accuracy=0.9, frozen_accuracy=0.8, scratch_accuracy=0.3,
        heldout_accuracy=0.75, heldout=24, parity_max_abs_diff=2e-6, port=50123,
        sentiment_version=1, sentiment_val_accuracy=0.97,
    )  # fmt: skip
    lines = summary(result, Path("models")).splitlines()
    assert lines[0] == ""  # a blank line after the classification tables
    assert lines[2:] == [
        "  pretrained Lite0, fine-tuned:  val accuracy 0.900 (head only, body frozen: 0.800)",
        "  same network from scratch:     val accuracy 0.300",
        "photos v2: held-out accuracy over gRPC on port 50123 0.750 (24 images); "
        "ONNX vs torch max |diff| 2e-06",
        "sentiment v1: validation accuracy 0.970",
        "serve them again with: onyx serve --repository models",
    ]
