"""ONNX Runtime's intra-op threads chosen per model by measurement: one thread for a small model
that runs as fast with it (one-thread sessions for single inputs, more for batches that gain
from them), the default share of the cores for the others.

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
from tests.serve.tiny_models import image_config, random_batch, reference, write_image_model


def load(folder: Path, runtime: RuntimeOptions) -> ModelVersion:
    """Load version 1 of the model in `folder`, then unload it; it must have loaded."""

    async def main() -> ModelVersion:
        loaded = await VersionLoader(runtime).load("tiny", image_config(), folder / "1")
        assert loaded.ready, loaded.reason
        await loaded.unload()
        return loaded

    return asyncio.run(main())


def timed_as(
    monkeypatch: pytest.MonkeyPatch, ms: dict[int, float] | dict[tuple[int, int], float]
) -> list[tuple[int, int]]:
    """Make the trial see these times, by threads or by (threads, rows); returns the
    (threads, rows) it timed."""
    timed: list[tuple[int, int]] = []

    def fake(session: Session, sample: np.ndarray) -> float:
        session.run(sample)  # the trial input fits the model
        key = (session.intra_op_threads, len(sample))
        timed.append(key)
        return ms[key] if key in ms else ms[key[0]]  # type: ignore[index]

    monkeypatch.setattr(version_module, "batch_one_ms", fake)
    return timed


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_image_model(tmp_path / "models", "tiny", 1)


def test_a_small_model_about_as_fast_on_one_thread_gets_one(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed = timed_as(monkeypatch, {2: 1.0, 1: 1.02})
    loaded = load(model, RuntimeOptions(device="cpu", cores=2))
    assert (loaded.intra_op_threads, loaded.batch_intra_op_threads) == (1, 1)
    assert timed == [(2, 1), (1, 1), (2, 8), (1, 8)]  # a batch of one, then a full one


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
    assert timed == [(2, 1)]


def test_threads_given_are_threads_used(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timed = timed_as(monkeypatch, {2: 9.0, 1: 1.0})
    options = RuntimeOptions(device="cpu", intra_op_threads=2, cores=2)
    assert load(model, options).intra_op_threads == 2
    assert timed == []  # no trial


def test_the_real_trial_picks_a_thread_count_and_serves(model: Path) -> None:
    loaded = load(model, RuntimeOptions(device="cpu", cores=2))
    assert loaded.intra_op_threads in (1, 2)


def test_one_thread_is_preferred_within_the_tolerance() -> None:
    assert prefer_one_thread(1.0, 1.04)
    assert prefer_one_thread(2.0, 1.0)
    assert not prefer_one_thread(1.0, 1.1)


def test_one_input_on_one_thread_and_batches_on_more_when_each_is_faster(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_as(monkeypatch, {(2, 1): 1.0, (1, 1): 0.9, (2, 8): 5.0, (1, 8): 10.0})
    ran: list[tuple[int, int]] = []  # (threads of the session, rows) of every serving run
    original = Session.run

    def recorded(session: Session, batch: np.ndarray) -> np.ndarray:
        ran.append((session.intra_op_threads, len(batch)))
        return original(session, batch)

    async def main() -> None:
        loaded = await VersionLoader(RuntimeOptions(device="cpu", cores=2)).load(
            "tiny", image_config(max_queue_delay_us=0), model / "1"
        )
        assert (loaded.intra_op_threads, loaded.batch_intra_op_threads) == (1, 2)
        monkeypatch.setattr(Session, "run", recorded)
        for rows in (1, 3):
            batch = random_batch(rows, seed=rows)
            outputs = await loaded.infer(batch)
            np.testing.assert_allclose(outputs, reference(batch, seed=1), rtol=1e-5, atol=1e-5)
        await loaded.unload()

    asyncio.run(main())
    assert ran == [(1, 1), (2, 3)]
