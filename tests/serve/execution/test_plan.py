"""The execution plan a version is loaded with: made once, at load, from the trial's times, and
readable on the version: a tiny model's runs every batch on the loop, a small one's has
one-thread slots and a lone limit, a model of a few ms keeps the per-batch thread choice, a
large one gets one session on all the cores.

python -m pytest tests/serve/execution/test_plan.py
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from onyx.serve.execution.plan import ExecutionPlan, TrialTime
from onyx.serve.execution.sizing import LONE_INLINE_MAX_MS
from onyx.serve.execution.thread_choice import ThreadChoice
from onyx.serve.version import ModelVersion, VersionLoader
from tests.serve.execution.test_lone import SMALL
from tests.serve.execution.test_threads import MID, TWO_CORES, load, plan_of, timed_as
from tests.serve.tiny_models import image_config, random_batch, write_image_model

# What the trial ran: a batch of one and a full batch (image_config's max_batch_size).
ONE, FULL = random_batch(1), random_batch(8)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_image_model(tmp_path / "models", "tiny", 1)


def test_a_tiny_models_plan_runs_every_batch_on_the_loop(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_as(monkeypatch, {(2, 1): 0.05, (1, 1): 0.05, (2, 8): 0.2, (1, 8): 0.15})
    plan = plan_of(load(model, TWO_CORES))
    assert (plan.threads, plan.slots, plan.inline_elements) == ((1,), 1, FULL.size)
    assert not plan.lone_allowed and plan.thread_choice() is None


def test_a_small_models_plan_has_one_thread_slots_and_a_lone_limit(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_as(monkeypatch, SMALL)  # a batch of one in 1 ms on two threads
    plan = plan_of(load(model, TWO_CORES))
    assert (plan.threads, plan.slots, plan.inline_elements) == ((1,), 2, 0)
    assert plan.lone_allowed and plan.lone_session is not None
    assert plan.lone_session.intra_op_threads == 2  # a lone request runs on all the cores
    assert plan.lone_elements == int(ONE.size * LONE_INLINE_MAX_MS / 1.0)
    assert len(plan.sessions()) == 3  # two slots and the lone request's session, all warmed


def test_a_few_ms_models_plan_keeps_the_per_batch_thread_choice(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_as(monkeypatch, MID)
    plan = plan_of(load(model, TWO_CORES))
    assert (plan.threads, plan.slots, plan.inline_elements, plan.lone_allowed) == (
        (1, 2),
        1,
        0,
        False,
    )
    assert sorted(plan.choice_seed, key=lambda t: (t.rows, t.option)) == [
        TrialTime(1, ONE.size, 0, MID[(1, 1)]),
        TrialTime(1, ONE.size, 1, MID[(2, 1)]),
        TrialTime(8, FULL.size, 0, MID[(1, 8)]),
        TrialTime(8, FULL.size, 1, MID[(2, 8)]),
    ]
    first, second = plan.thread_choice(), plan.thread_choice()
    assert isinstance(first, ThreadChoice) and first is not second  # each pool its own
    assert (first.best(1, ONE.size), first.best(8, FULL.size)) == (1, 2)


def test_a_large_model_gets_one_session_on_all_the_cores(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_as(monkeypatch, {2: 40.0, 1: 1.0})
    plan = plan_of(load(model, TWO_CORES))
    assert (plan.threads, plan.slots, len(plan.sessions())) == ((2,), 1, 1)
    assert (plan.inline_elements, plan.lone_allowed, plan.choice_seed) == (0, False, ())
    assert plan.describe() == "1 slot(s) of 2 intra-op threads"


def test_the_plan_is_made_once_at_load_and_logged(
    model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    timed = timed_as(monkeypatch, MID)

    async def main() -> ModelVersion:
        config = image_config(max_queue_delay_us=0)
        loaded = await VersionLoader(TWO_CORES).load("tiny", config, model / "1")
        assert loaded.pool is not None and loaded.pool.plan is loaded.plan
        for rows in (1, 8, 1):
            await loaded.infer(random_batch(rows))
        await loaded.unload()
        return loaded

    with caplog.at_level(logging.DEBUG, logger="onyx.serve.version"):
        loaded = asyncio.run(main())
    assert len(timed) == 4  # the trial's four timings, none after
    planned = [r.getMessage() for r in caplog.records if "runs as planned" in r.getMessage()]
    assert planned == [f"model tiny version 1 runs as planned: {plan_of(loaded).describe()}"]
    assert "each batch on the thread count faster of late" in planned[0]


def test_a_plan_refuses_slots_without_a_session_of_each_thread_count() -> None:
    one, two = object(), object()
    with pytest.raises(ValueError, match="one session per slot"):
        ExecutionPlan(((one, one), (two,)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="two thread counts"):
        ExecutionPlan(((one,),), choice_seed=(TrialTime(1, 1, 0, 1.0),))  # type: ignore[arg-type]
