"""ONNX Runtime's intra-op threads per model: a small CPU model gets sessions of one thread and
of the default share of the cores, and each batch runs on the thread count faster of late
(timed at load, then on every served batch); other models get the default threads only.

python -m pytest tests/serve/execution/test_threads.py
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from onyx.contract.errors import InferenceFailed
from onyx.serve.execution import sizing
from onyx.serve.execution.interface import Outputs
from onyx.serve.execution.plan import ExecutionPlan
from onyx.serve.execution.runtime import RuntimeOptions, Session
from onyx.serve.execution.thread_choice import EXPLORE_EVERY
from onyx.serve.version import ModelVersion, VersionLoader
from tests.serve.tiny_models import (
    image_config,
    infer_all_checked,
    random_batch,
    reference,
    write_image_model,
)

TWO_CORES = RuntimeOptions(device="cpu", cores=2)
# A model of a few ms as the load-time trial sees it (ms by threads and rows): over
# LONE_INLINE_MAX_MS, each batch runs on the thread count faster of late.
MID = {(2, 1): 3.0, (1, 1): 2.7, (2, 8): 15.0, (1, 8): 30.0}


def load(folder: Path, runtime: RuntimeOptions) -> ModelVersion:
    """Load version 1 of the model in `folder`, then unload it; it must have loaded."""

    async def main() -> ModelVersion:
        loaded = await VersionLoader(runtime).load("tiny", image_config(), folder / "1")
        assert loaded.ready, loaded.reason
        await loaded.unload()
        return loaded

    return asyncio.run(main())


def plan_of(version: ModelVersion) -> ExecutionPlan:
    """The plan `version` was loaded with (it must have loaded)."""
    assert version.plan is not None, version.reason
    return version.plan


def timed_as(
    monkeypatch: pytest.MonkeyPatch, ms: dict[int, float] | dict[tuple[int, int], float]
) -> list[tuple[int, int]]:
    """Make the load-time trial see these times, by threads or by (threads, rows); returns
    the (threads, rows) it timed."""
    timed: list[tuple[int, int]] = []

    def fake(session: Session, sample: np.ndarray) -> float:
        session.run(sample)  # the trial input fits the model
        key = (session.intra_op_threads, len(sample))
        timed.append(key)
        return ms[key] if key in ms else ms[key[0]]  # type: ignore[index]

    monkeypatch.setattr(sizing, "batch_one_ms", fake)
    return timed


def record_runs(monkeypatch: pytest.MonkeyPatch, slower: dict[int, float] | None = None
                ) -> list[tuple[int, int]]:  # fmt: skip
    """Record (threads, rows) of every session run from now on; sessions of the thread counts
    in `slower` take that many seconds longer (a machine busy in a way one count suffers)."""
    ran: list[tuple[int, int]] = []
    original = Session.run

    def recorded(session: Session, batch: np.ndarray) -> Outputs:
        ran.append((session.intra_op_threads, len(batch)))
        time.sleep((slower or {}).get(session.intra_op_threads, 0.0))
        return original(session, batch)

    monkeypatch.setattr(Session, "run", recorded)
    return ran


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_image_model(tmp_path / "models", "tiny", 1)


def test_a_small_model_gets_both_thread_counts_timed_at_load(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed = timed_as(monkeypatch, MID)
    loaded = load(model, TWO_CORES)
    assert plan_of(loaded).threads == (1, 2)
    assert timed == [(2, 1), (2, 8), (1, 1), (1, 8)]  # a batch of one, then a full one
    choice = plan_of(loaded).thread_choice()
    assert choice is not None
    one, full = random_batch(1, seed=1), random_batch(8, seed=8)  # what the trial ran
    assert choice.best(1, one.size) == 1
    assert choice.best(8, full.size) == 2


def test_a_slow_model_keeps_the_default_threads_untried(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed = timed_as(monkeypatch, {2: 40.0, 1: 1.0})
    loaded = load(model, TWO_CORES)
    assert (plan_of(loaded).threads, plan_of(loaded).thread_choice()) == ((2,), None)
    assert timed == [(2, 1)]


def test_threads_given_are_threads_used(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timed = timed_as(monkeypatch, {2: 9.0, 1: 1.0})
    loaded = load(model, RuntimeOptions(device="cpu", intra_op_threads=2, cores=2))
    assert (plan_of(loaded).threads, plan_of(loaded).thread_choice()) == ((2,), None)
    assert timed == [(2, 1), (2, 8)]  # timed (is it tiny?), never tried on one thread


def test_batches_run_where_the_trial_found_them_faster(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_as(monkeypatch, MID)

    async def main() -> list[tuple[int, int]]:
        loaded = await VersionLoader(TWO_CORES).load(
            "tiny", image_config(max_queue_delay_us=0), model / "1"
        )
        ran = record_runs(monkeypatch)
        for rows in (1, 8):
            batch = random_batch(rows, seed=rows)
            outputs = await loaded.infer(batch)
            logits = outputs["logits"]
            np.testing.assert_allclose(logits, reference(batch, seed=1), rtol=1e-5, atol=1e-5)
        await loaded.unload()
        return ran

    assert asyncio.run(main()) == [(1, 1), (2, 8)]


def test_the_choice_moves_when_served_runs_say_otherwise(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trial found one thread faster for single inputs; then one-thread runs get slow (the
    machine's load changed): served single inputs move to the two-thread sessions."""
    timed_as(monkeypatch, {(2, 1): 3.0, (1, 1): 2.5, (2, 8): 15.0, (1, 8): 30.0})

    async def main() -> list[tuple[int, int]]:
        loaded = await VersionLoader(TWO_CORES).load(
            "tiny", image_config(max_queue_delay_us=0), model / "1"
        )
        ran = record_runs(monkeypatch, slower={1: 0.01})
        for index in range(3 * EXPLORE_EVERY):
            await loaded.infer(random_batch(1, seed=index))
        await loaded.unload()
        return ran

    ran = asyncio.run(main())
    assert ran[0] == (1, 1)  # as the trial said
    last = ran[-EXPLORE_EVERY:]  # ... until runs said no: one thread is only tried now and then
    assert (last.count((2, 1)), last.count((1, 1))) == (EXPLORE_EVERY - 1, 1)


def test_the_real_trial_serves(model: Path) -> None:
    loaded = load(model, TWO_CORES)
    assert plan_of(loaded).threads in ((1,), (1, 2), (2,))  # tiny on one thread, or not tiny


@pytest.mark.parametrize("given", [0, 2])
def test_a_tiny_model_runs_on_the_event_loop_with_one_thread(
    model: Path, monkeypatch: pytest.MonkeyPatch, given: int
) -> None:
    """A full batch under INLINE_MAX_MS: no thread hand-over; one intra-op thread unless
    --intra-op-threads says otherwise."""
    timed_as(monkeypatch, {(2, 1): 0.05, (1, 1): 0.05, (2, 8): 0.2, (1, 8): 0.15})
    threads: list[str] = []
    original = Session.run

    def recorded(session: Session, batch: np.ndarray) -> Outputs:
        threads.append(threading.current_thread().name)
        return original(session, batch)

    async def main() -> ModelVersion:
        runtime = RuntimeOptions(device="cpu", intra_op_threads=given, cores=2)
        loaded = await VersionLoader(runtime).load(
            "tiny", image_config(max_queue_delay_us=0), model / "1"
        )
        monkeypatch.setattr(Session, "run", recorded)
        batches = [random_batch(rows, seed=rows) for rows in (1, 3, 8, 1)]
        await infer_all_checked(loaded, batches)
        await loaded.unload()
        return loaded

    loaded = asyncio.run(main())
    assert plan_of(loaded).threads == ((given or 1),)
    assert threads and set(threads) == {threading.main_thread().name}


def test_a_failing_inline_run_fails_its_requests_only(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_as(monkeypatch, {2: 0.05, 1: 0.05})

    def broken(*_: object) -> Outputs:
        raise RuntimeError("ORT says no")

    async def main() -> None:
        loaded = await VersionLoader(TWO_CORES).load(
            "tiny", image_config(max_queue_delay_us=0), model / "1"
        )
        original = Session.run
        monkeypatch.setattr(Session, "run", broken)
        with pytest.raises(InferenceFailed, match="ORT says no"):
            await loaded.infer(random_batch(1))
        monkeypatch.setattr(Session, "run", original)
        batch = random_batch(2, seed=3)  # the version still serves
        outputs = await loaded.infer(batch)
        np.testing.assert_allclose(
            outputs["logits"], reference(batch, seed=1), rtol=1e-5, atol=1e-5
        )
        await loaded.unload()

    asyncio.run(main())
