"""ONNX Runtime's intra-op threads chosen per model by measurement: one thread for a small model
that runs about as fast with it, the default share of the cores for the others.

python -m pytest tests/serve/test_threads.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from onyx.serve import version as version_module
from onyx.serve.runtime import RuntimeOptions, Session
from onyx.serve.version import ModelVersion, VersionLoader, prefer_one_thread
from tests.serve.tiny_models import image_config, write_image_model


def load(folder: Path, runtime: RuntimeOptions) -> ModelVersion:
    """Load version 1 of the model in `folder`, then unload it; it must have loaded."""

    async def main() -> ModelVersion:
        loaded = await VersionLoader(runtime).load("tiny", image_config(), folder / "1")
        assert loaded.ready, loaded.reason
        await loaded.unload()
        return loaded

    return asyncio.run(main())


def timed_as(monkeypatch: pytest.MonkeyPatch, ms_by_threads: dict[int, float]) -> list[int]:
    """Make the trial see these batch-of-one times; returns the thread counts it timed."""
    timed: list[int] = []

    def fake(session: Session, sample: np.ndarray) -> float:
        session.run(sample)  # the trial input fits the model
        timed.append(session.intra_op_threads)
        return ms_by_threads[session.intra_op_threads]

    monkeypatch.setattr(version_module, "batch_one_ms", fake)
    return timed


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_image_model(tmp_path / "models", "tiny", 1)


def test_a_small_model_about_as_fast_on_one_thread_gets_one(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed = timed_as(monkeypatch, {2: 1.0, 1: 1.2})
    loaded = load(model, RuntimeOptions(device="cpu", cores=2))
    assert loaded.intra_op_threads == 1
    assert timed == [2, 1]


def test_a_small_model_that_needs_its_threads_keeps_them(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_as(monkeypatch, {2: 1.0, 1: 1.9})
    assert load(model, RuntimeOptions(device="cpu", cores=2)).intra_op_threads == 2


def test_a_slow_model_is_not_tried_on_one_thread(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed = timed_as(monkeypatch, {2: 40.0, 1: 1.0})
    assert load(model, RuntimeOptions(device="cpu", cores=2)).intra_op_threads == 2
    assert timed == [2]


def test_threads_given_are_threads_used(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timed = timed_as(monkeypatch, {2: 9.0, 1: 1.0})
    options = RuntimeOptions(device="cpu", intra_op_threads=2, cores=2)
    assert load(model, options).intra_op_threads == 2
    assert timed == []  # no trial


def test_the_real_trial_picks_a_thread_count_and_serves(model: Path) -> None:
    loaded = load(model, RuntimeOptions(device="cpu", cores=2))
    assert loaded.intra_op_threads in (1, 2)


def test_one_thread_is_preferred_within_the_tolerance() -> None:
    assert prefer_one_thread(1.0, 1.2)
    assert prefer_one_thread(2.0, 1.0)
    assert not prefer_one_thread(1.0, 1.3)
