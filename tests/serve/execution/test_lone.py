"""A lone request of a small model runs on the event loop while nobody waits for it; once work
waited for an inline run, or while a batch runs in a session thread, requests go to the
session threads and batch as before.

python -m pytest tests/serve/execution/test_lone.py
"""

from __future__ import annotations

import asyncio
import collections
import selectors
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from onyx.serve.execution import lone
from onyx.serve.execution.interface import Outputs
from onyx.serve.execution.lone import (
    BACK_OFF_S,
    LOOP_INTERNALS,
    LoneRuns,
    can_peek,
    loop_internals,
    work_waiting,
)
from onyx.serve.execution.runtime import RuntimeOptions, Session
from onyx.serve.version import ModelVersion, VersionLoader
from tests.serve.execution.test_threads import timed_as
from tests.serve.tiny_models import (
    image_config,
    infer_all_checked,
    random_batch,
    reference,
    write_image_model,
)

TWO_CORES = RuntimeOptions(device="cpu", cores=2)
# A ~1 ms model as the load-time trial sees it: small, not tiny; two threads faster for all.
SMALL = {(2, 1): 1.0, (1, 1): 1.5, (2, 8): 5.0, (1, 8): 10.0}


def test_inline_runs_stop_for_a_while_once_work_waited() -> None:
    lone = LoneRuns()
    assert lone.allows(10.0)
    lone.ran(10.001, waited=False)
    assert lone.allows(10.002)
    lone.ran(10.003, waited=True)
    assert not lone.allows(10.003 + BACK_OFF_S / 2)
    assert lone.allows(10.003 + BACK_OFF_S)


def test_no_inline_run_while_a_batch_runs_in_a_thread() -> None:
    lone = LoneRuns(threaded=1)
    assert not lone.allows(10.0)
    lone.threaded = 0
    assert lone.allows(10.0)


def test_work_waiting_sees_callbacks_and_readable_sockets() -> None:
    async def main() -> list[bool]:
        loop = asyncio.get_running_loop()
        seen = [work_waiting(loop)]
        handle = loop.call_soon(lambda: None)
        seen.append(work_waiting(loop))
        handle.cancel()
        await asyncio.sleep(0)  # the cancelled callback leaves the ready queue
        reader, writer = socket.socketpair()
        with reader, writer:
            loop.add_reader(reader.fileno(), lambda: None)
            seen.append(work_waiting(loop))
            writer.send(b"a request")  # what gRPC's poller does when a call comes in
            seen.append(work_waiting(loop))
            loop.remove_reader(reader.fileno())
        return seen

    assert asyncio.run(main()) == [False, True, False, True]


def test_a_timer_due_is_work_waiting_and_other_loops_cannot_be_peeked() -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        loop.call_at(loop.time() - 1, lambda: None)  # due already, not yet run
        return work_waiting(loop)

    assert asyncio.run(main())
    assert not can_peek(object())  # type: ignore[arg-type]


def test_asyncio_still_has_the_loop_internals_the_inline_gate_reads() -> None:
    """If this fails, this Python changed a private part of asyncio's event loop that
    `lone.loop_internals` reads: lone requests no longer run inline on it (the gate answers
    "work waiting" and they go to the session threads). Adapt `loop_internals`."""
    loop = asyncio.new_event_loop()
    try:
        found = loop_internals(loop)
    finally:
        loop.close()
    assert not isinstance(found, str), f"Python {sys.version.split()[0]}: {found}"


def a_loop_like_asyncios(**changed: object) -> SimpleNamespace:
    """An object with the internals `loop_internals` reads, idle, some of them `changed`."""
    fields: dict[str, object] = {
        "_ready": collections.deque(),
        "_scheduled": [],
        "_selector": selectors.DefaultSelector(),
        "time": time.monotonic,
    }
    fields.update(changed)
    return SimpleNamespace(**{name: value for name, value in fields.items() if value is not None})


@pytest.mark.parametrize("name", list(LOOP_INTERNALS))
@pytest.mark.parametrize("value", [None, {}], ids=["missing", "changed"])
def test_a_loop_whose_internals_changed_never_runs_inline(name: str, value: object) -> None:
    idle = a_loop_like_asyncios()
    assert can_peek(idle) and not work_waiting(idle)  # type: ignore[arg-type]
    changed = a_loop_like_asyncios(**{name: value})
    reason = loop_internals(changed)  # type: ignore[arg-type]
    assert isinstance(reason, str) and f".{name} is " in reason, reason
    assert not can_peek(changed)  # type: ignore[arg-type]
    assert work_waiting(changed)  # type: ignore[arg-type]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_image_model(tmp_path / "models", "tiny", 1)


def runs_recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """(thread name, the session's intra-op threads, rows) of every session run from now on."""
    ran: list[tuple[str, int, int]] = []
    original = Session.run

    def recorded(session: Session, batch: np.ndarray) -> Outputs:
        ran.append((threading.current_thread().name, session.intra_op_threads, len(batch)))
        return original(session, batch)

    monkeypatch.setattr(Session, "run", recorded)
    return ran


async def loaded_small(model: Path, monkeypatch: pytest.MonkeyPatch) -> ModelVersion:
    timed_as(monkeypatch, SMALL)
    config = image_config(max_queue_delay_us=0)
    version = await VersionLoader(TWO_CORES).load("tiny", config, model / "1")
    assert version.ready, version.reason
    await asyncio.sleep(0.01)  # its batcher's task starts: the loop is idle, as a server's is
    return version


def test_lone_requests_run_on_the_event_loop_on_all_the_cores(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> list[tuple[str, int, int]]:
        version = await loaded_small(model, monkeypatch)
        ran = runs_recorded(monkeypatch)
        for index in range(5):  # one client: each request alone, nothing else waiting
            batch = random_batch(1, seed=index)
            outputs = await version.infer(batch)
            logits = outputs["logits"]
            np.testing.assert_allclose(logits, reference(batch, seed=1), rtol=1e-5, atol=1e-5)
        await version.unload()
        return ran

    ran = asyncio.run(main())
    main_thread = threading.main_thread().name
    assert ran == [(main_thread, 2, 1)] * 5


def test_requests_that_wait_are_batched_in_session_threads(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight requests at once: each finds the others waiting, so none runs on the loop; they
    form batches in the session threads, not eight inline runs one after the other."""

    async def main() -> list[tuple[str, int, int]]:
        version = await loaded_small(model, monkeypatch)
        ran = runs_recorded(monkeypatch)
        await infer_all_checked(version, [random_batch(1, seed=index) for index in range(8)])
        await version.unload()
        return ran

    ran = asyncio.run(main())
    main_thread = threading.main_thread().name
    assert all(name != main_thread and threads == 1 for name, threads, _ in ran)
    assert sum(rows for *_, rows in ran) == 8
    assert max(rows for *_, rows in ran) > 1  # they batched


def test_work_that_came_in_during_an_inline_run_turns_them_off_for_a_while(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that arrives while a lone one runs on the loop: the next lone requests go to
    the session threads until BACK_OFF_S has passed, then run inline again."""

    async def main() -> list[tuple[str, int, int]]:
        version = await loaded_small(model, monkeypatch)
        ran = runs_recorded(monkeypatch)
        recorded = Session.run
        loop = asyncio.get_running_loop()

        def arriving(session: Session, batch: np.ndarray) -> Outputs:
            if not ran:  # during the first run, something comes in for the loop
                loop.call_soon(lambda: None)
            return recorded(session, batch)

        monkeypatch.setattr(Session, "run", arriving)
        for index in range(3):
            await version.infer(random_batch(1, seed=index))
        await asyncio.sleep(BACK_OFF_S * 1.5)
        await version.infer(random_batch(1, seed=3))
        await version.unload()
        return ran

    ran = asyncio.run(main())
    main_thread = threading.main_thread().name
    on_loop = [name == main_thread for name, *_ in ran]
    assert on_loop == [True, False, False, True]


def test_a_full_batch_does_not_run_on_the_loop(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a lone request about as large as the trial's batch of one runs inline: a full batch
    on an idle server goes to a session thread."""

    async def main() -> list[tuple[str, int, int]]:
        version = await loaded_small(model, monkeypatch)
        ran = runs_recorded(monkeypatch)
        await infer_all_checked(version, [random_batch(8, seed=8)])
        await infer_all_checked(version, [random_batch(1, seed=1)])
        await version.unload()
        return ran

    ran = asyncio.run(main())
    main_thread = threading.main_thread().name
    assert [(name == main_thread, rows) for name, _, rows in ran] == [(False, 8), (True, 1)]


def test_a_model_above_the_lone_limit_never_runs_on_the_loop(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timed_as(monkeypatch, {(2, 1): 4.0, (1, 1): 5.0, (2, 8): 9.0, (1, 8): 30.0})

    async def main() -> list[tuple[str, int, int]]:
        config = image_config(max_queue_delay_us=0)
        version = await VersionLoader(TWO_CORES).load("tiny", config, model / "1")
        ran = runs_recorded(monkeypatch)
        for index in range(3):
            await version.infer(random_batch(1, seed=index))
        await version.unload()
        return ran

    ran = asyncio.run(main())
    assert len(ran) == 3
    assert threading.main_thread().name not in {name for name, *_ in ran}


def test_a_small_model_runs_batches_side_by_side_on_one_thread_slots(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two cores: two one-thread slots, each running a batch at once, and the lone request's
    session on both cores."""
    active, most, threads = [0], [0], set()
    lock = threading.Lock()
    original = Session.run

    def slow(session: Session, batch: np.ndarray) -> Outputs:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            threads.add(session.intra_op_threads)
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return original(session, batch)

    async def main() -> None:
        version = await loaded_small(model, monkeypatch)
        monkeypatch.setattr(Session, "run", slow)
        assert version.batcher is not None
        assert version.batcher.policy.max_concurrent_batches == 2
        batches = [random_batch(1, seed=index) for index in range(6)]
        await infer_all_checked(version, batches)
        await version.unload()

    asyncio.run(main())
    assert most[0] == 2
    assert threads == {1}  # a burst: nobody runs inline, the slots run one thread each


def test_lone_requests_go_to_the_threads_where_the_loop_cannot_be_read(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on a Python whose asyncio changed the internals the gate reads (or on uvloop)."""
    monkeypatch.setattr(lone, "loop_internals", lambda _: "_ready is missing")

    async def main() -> list[tuple[str, int, int]]:
        version = await loaded_small(model, monkeypatch)
        ran = runs_recorded(monkeypatch)
        for index in range(3):
            await version.infer(random_batch(1, seed=index))
        await version.unload()
        return ran

    ran = asyncio.run(main())
    assert len(ran) == 3
    assert threading.main_thread().name not in {name for name, *_ in ran}
