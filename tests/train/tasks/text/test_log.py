"""The text training log states the whole recurrent setup, bidirectional and layers included."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from onyx.train.config import TextTrainConfig
from onyx.train.data.reviews import generate_reviews, write_jsonl
from onyx.train.engine.loop import fit
from onyx.train.tasks.registry import task_for


def test_log_says_bidirectional_two_layer_gru(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_jsonl(generate_reviews(40, seed=0), tmp_path / "reviews.jsonl")
    config = TextTrainConfig(data=data, out_dir=tmp_path / "run", cell="gru", layers=2,
                             bidirectional=True, hidden=8, embed_dim=8, epochs=1, max_steps=1,
                             plots=False, device="cpu")  # fmt: skip
    with caplog.at_level(logging.INFO, logger="onyx.train.engine.loop"):
        fit(task_for(config))
    assert "bidirectional 2-layer GRU (hidden 8 per direction, embeddings 8, last pooling)" in (
        caplog.text
    )
