"""The dynamic batcher on its own: pure asyncio, a fake model, no gRPC and no ONNX Runtime.

python -m pytest tests/serve/test_batching.py
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from onyx.contract.errors import DeadlineExpired, InferenceFailed, ModelNotReady, Overloaded
from onyx.serve.batching import BatchPolicy, Collate, DynamicBatcher, Length, Stages, concatenate
from onyx.serve.execution.interface import Outputs


def doubled(batch: np.ndarray) -> Outputs:
    """What the fake model answers: its input doubled, as its one output "y"."""
    return {"y": batch * 2}


def assert_doubled(outputs: Outputs, inputs: np.ndarray) -> None:
    assert list(outputs) == ["y"]
    np.testing.assert_array_equal(outputs["y"], inputs * 2)


class FakeModel:
    """Doubles its input; records every batch it ran; can be held shut or told to fail."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_with: Exception | None = None
        self.started = asyncio.Event()

    async def __call__(self, batch: np.ndarray) -> Outputs:
        self.batches.append(batch.copy())
        self.started.set()
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return doubled(batch)

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


class Recorder:
    """A BatchObserver that keeps what it was told."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.finished: list[tuple[int, bool]] = []

    def batch_started(self, size: int, queue_waits_s: Sequence[float]) -> None:
        assert all(w >= 0 for w in queue_waits_s)
        self.started.append(size)

    def batch_finished(self, size: int, compute_s: float, ok: bool) -> None:
        assert compute_s >= 0
        self.finished.append((size, ok))


def rows(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.float32).reshape(count, 1)


def run(
    test: Callable[..., Awaitable[None]],
    collate: Collate = concatenate,
    length: Length | None = None,
    **policy: Any,
) -> None:
    """Run one async test against a started batcher over a fresh FakeModel."""

    async def main() -> None:
        model = FakeModel()
        batcher = DynamicBatcher(model, BatchPolicy(**policy), collate=collate, length=length)
        batcher.start()
        try:
            await asyncio.wait_for(test(batcher, model), timeout=10)
        finally:
            model.gate.set()
            await asyncio.wait_for(batcher.close(), timeout=10)

    asyncio.run(main())


def test_full_batch_flushes_without_waiting_for_the_delay() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        started = time.monotonic()
        results = await asyncio.gather(*(batcher.submit(rows(i, 1)) for i in range(4)))
        # The delay is 60 s: only a size flush can have answered these.
        assert time.monotonic() - started < 30
        assert model.sizes == [4]
        for i, result in enumerate(results):
            assert_doubled(result, rows(i, 1))

    run(test, max_batch_size=4, max_queue_delay_us=60_000_000)


def test_partial_batch_flushes_after_the_delay() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        first = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await asyncio.sleep(0.02)  # well inside the delay: the first request is still waiting
        assert model.sizes == []
        second = await batcher.submit(rows(1, 2))
        await first
        assert model.sizes == [3]  # both went together once the delay ran out, never full
        assert_doubled(second, rows(1, 2))

    run(test, max_batch_size=8, max_queue_delay_us=300_000)


def test_queued_requests_form_the_next_batch_while_the_model_is_busy() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        first = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await model.started.wait()
        later = [asyncio.ensure_future(batcher.submit(rows(10 + i, 1))) for i in range(5)]
        await asyncio.sleep(0.05)
        model.gate.set()
        await first
        results = await asyncio.gather(*later)
        assert model.sizes == [1, 5]
        assert [float(r["y"][0, 0]) for r in results] == [2.0 * (10 + i) for i in range(5)]

    run(test, max_batch_size=8, max_queue_delay_us=0)


def test_the_next_batch_starts_before_the_last_one_is_answered() -> None:
    """At saturation the model must not sit idle while the event loop answers callers."""
    events: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pending: list[tuple[asyncio.Future[Outputs], np.ndarray]] = []

        def eager_run(batch: np.ndarray) -> asyncio.Future[Outputs]:
            events.append(f"run {int(batch[0, 0])}")
            pending.append((loop.create_future(), batch))
            return pending[-1][0]

        batcher = DynamicBatcher(eager_run, BatchPolicy(max_batch_size=1, max_queue_delay_us=0))
        batcher.start()

        async def caller(index: int) -> None:
            await batcher.submit(rows(index, 1))
            events.append(f"answered {index}")

        callers = [asyncio.ensure_future(caller(i)) for i in range(2)]
        for index in range(2):
            while len(pending) <= index:
                await asyncio.sleep(0)
            future, batch = pending[index]
            future.set_result(doubled(batch))
        await asyncio.wait_for(asyncio.gather(*callers), timeout=10)
        await batcher.close()

    asyncio.run(main())
    assert events == ["run 0", "run 1", "answered 0", "answered 1"]


def sequences(length: int, value: int) -> np.ndarray:
    """One text-like input: a row of `length` token ids, all `value`."""
    return np.full((1, length), value, dtype=np.int64)


def pad_right(blocks: Sequence[np.ndarray]) -> np.ndarray:
    longest = max(block.shape[1] for block in blocks)
    return np.concatenate([np.pad(b, ((0, 0), (0, longest - b.shape[1]))) for b in blocks])


def run_text(test: Callable[..., Awaitable[None]], **policy: Any) -> None:
    """Like `run`, with inputs whose length is their second axis (as text models have)."""
    run(test, collate=pad_right, length=lambda inputs: int(inputs.shape[1]), **policy)


def test_a_deep_queue_is_batched_by_length_oldest_first() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        first = asyncio.ensure_future(batcher.submit(sequences(5, 1)))
        await model.started.wait()
        lengths = [10, 100, 12, 98, 11, 99]
        queued = [asyncio.ensure_future(batcher.submit(sequences(n, n))) for n in lengths]
        await asyncio.sleep(0.05)
        model.gate.set()
        await first
        results = await asyncio.gather(*queued)
        # Each batch: the oldest waiting request, then the closest in length to it.
        assert [b.shape for b in model.batches] == [(1, 5), (3, 12), (3, 100)]
        assert [sorted(set(b[:, 0])) for b in model.batches[1:]] == [[10, 11, 12], [98, 99, 100]]
        for n, result in zip(lengths, results, strict=True):  # padding is the caller's own again
            np.testing.assert_array_equal(result["y"][:, :n], sequences(n, n) * 2)

    run_text(test, max_batch_size=3, max_queue_delay_us=0)


def test_a_queue_of_similar_lengths_that_fits_one_batch_is_taken_whole() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        first = asyncio.ensure_future(batcher.submit(sequences(5, 1)))
        await model.started.wait()
        queued = [asyncio.ensure_future(batcher.submit(sequences(n, n))) for n in (10, 30, 12)]
        await asyncio.sleep(0.05)
        model.gate.set()
        await asyncio.gather(first, *queued)
        assert [b.shape for b in model.batches] == [(1, 5), (3, 30)]

    run_text(test, max_batch_size=4, max_queue_delay_us=0)


@pytest.mark.parametrize("outlier_first", [False, True])
def test_short_requests_are_never_padded_to_an_outlier(outlier_first: bool) -> None:
    """However shallow the queue, a request 100x longer runs alone (issue 12): padding a
    batch to it would make every other request in the batch pay for its size."""

    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        first = asyncio.ensure_future(batcher.submit(sequences(5, 1)))
        await model.started.wait()
        lengths = (1000, 10, 12) if outlier_first else (10, 1000, 12)
        queued = [asyncio.ensure_future(batcher.submit(sequences(n, n))) for n in lengths]
        await asyncio.sleep(0.05)
        model.gate.set()
        await asyncio.gather(first, *queued)
        shapes = [b.shape for b in model.batches]
        expected = [(1, 1000), (2, 12)] if outlier_first else [(2, 12), (1, 1000)]
        assert shapes == [(1, 5), *expected]

    run_text(test, max_batch_size=4, max_queue_delay_us=0)


def test_results_come_back_in_order_for_each_caller() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        sizes = [1, 3, 2, 5, 1, 4]
        starts = np.cumsum([0, *sizes[:-1]]) * 100
        results = await asyncio.gather(
            *(batcher.submit(rows(int(s), n)) for s, n in zip(starts, sizes, strict=True))
        )
        for s, n, result in zip(starts, sizes, results, strict=True):
            assert_doubled(result, rows(int(s), n))
        assert all(size <= 4 for size in model.sizes)
        assert sum(model.sizes) == sum(sizes)

    run(test, max_batch_size=4, max_queue_delay_us=1000)


def test_a_large_request_is_split_across_batches_and_reassembled() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        result = await batcher.submit(rows(0, 10))
        assert_doubled(result, rows(0, 10))
        assert model.sizes == [4, 4, 2]

    run(test, max_batch_size=4, max_queue_delay_us=1000)


def test_a_large_request_takes_turns_with_requests_that_arrive_after_it() -> None:
    """Its next chunk is queued only when the last one is done, behind what arrived meanwhile:
    a huge request cannot make everyone wait for its whole size (issue 12)."""

    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        large = asyncio.ensure_future(batcher.submit(rows(0, 6)))  # three chunks of 2
        await model.started.wait()
        small = asyncio.ensure_future(batcher.submit(rows(100, 1)))
        await asyncio.sleep(0.02)
        assert batcher.queued_rows == 1  # only the small one: chunk 2 waits for its turn
        model.gate.set()
        assert_doubled(await large, rows(0, 6))
        assert_doubled(await small, rows(100, 1))
        assert model.sizes == [2, 1, 2, 2]

    run(test, max_batch_size=2, max_queue_delay_us=0)


def test_a_cancelled_large_request_leaves_nothing_behind() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        large = asyncio.ensure_future(batcher.submit(rows(0, 6)))
        await model.started.wait()
        large.cancel()
        await asyncio.sleep(0.01)
        model.gate.set()
        # The whole queue is free again: no rows of the cancelled chunks are still counted.
        assert_doubled(await batcher.submit(rows(9, 6)), rows(9, 6))
        assert model.sizes == [2, 2, 2, 2] and batcher.queued_rows == 0

    run(test, max_batch_size=2, max_queue_delay_us=0, max_queue_size=6)


def test_a_failing_batch_fails_every_request_in_it() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.fail_with = RuntimeError("boom")
        outcomes = await asyncio.gather(
            *(batcher.submit(rows(i, 1)) for i in range(3)), return_exceptions=True
        )
        assert model.sizes == [3]
        assert all(isinstance(o, InferenceFailed) and "boom" in str(o) for o in outcomes)
        model.fail_with = None  # the batcher keeps serving after a failure
        assert_doubled(await batcher.submit(rows(7, 1)), rows(7, 1))

    run(test, max_batch_size=4, max_queue_delay_us=10_000)


def test_a_model_returning_the_wrong_number_of_rows_in_any_output_fails_the_batch() -> None:
    async def main() -> None:
        async def short(batch: np.ndarray) -> Outputs:
            return {"y": batch * 2, "short": batch[:-1]}

        batcher = DynamicBatcher(short, BatchPolicy(max_batch_size=4, max_queue_delay_us=0))
        batcher.start()
        with pytest.raises(InferenceFailed, match="output 'short' for a batch of 2 rows"):
            await batcher.submit(rows(0, 2))
        await batcher.close()

    asyncio.run(main())


def two_outputs(batch: np.ndarray) -> Outputs:
    """A model with two outputs of other shapes and types: (n, 1) scores, (n, 2, 3) maps."""
    maps = np.broadcast_to(batch[:, :, None], (len(batch), 2, 3)).astype(np.int64)
    return {"scores": batch * 2, "maps": maps}


def test_every_named_output_is_split_per_caller() -> None:
    """Each output goes back to the callers row by row: in a batch of several callers, and
    reassembled over a large request's chunks."""

    async def main() -> None:
        ran: list[int] = []

        async def model(batch: np.ndarray) -> Outputs:
            ran.append(len(batch))
            return two_outputs(batch)

        batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=4, max_queue_delay_us=50_000))
        batcher.start()
        inputs = [rows(0, 1), rows(10, 3), rows(20, 6)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        assert sorted(ran) == [2, 4, 4]  # callers shared batches, the large one was chunked
        for x, result in zip(inputs, results, strict=True):
            assert sorted(result) == ["maps", "scores"]
            for name, expected in two_outputs(x).items():
                np.testing.assert_array_equal(result[name], expected, strict=True)

    asyncio.run(main())


def test_an_expired_deadline_is_dropped_before_compute() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        busy = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await model.started.wait()
        late = asyncio.ensure_future(batcher.submit(rows(1, 1), deadline=time.monotonic() + 0.01))
        fine = asyncio.ensure_future(batcher.submit(rows(2, 1)))
        await asyncio.sleep(0.05)  # the deadline passes while the model is busy
        model.gate.set()
        with pytest.raises(DeadlineExpired, match="deadline passed"):
            await late
        await busy
        assert_doubled(await fine, rows(2, 1))
        assert [b[:, 0].tolist() for b in model.batches] == [[0.0], [2.0]]

    run(test, max_batch_size=4, max_queue_delay_us=0)


def test_a_cancelled_caller_is_dropped_before_compute() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        busy = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await model.started.wait()
        gone = asyncio.ensure_future(batcher.submit(rows(1, 6)))  # two chunks, both queued
        stays = asyncio.ensure_future(batcher.submit(rows(9, 1)))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        model.gate.set()
        await busy
        assert_doubled(await stays, rows(9, 1))
        assert gone.cancelled()
        assert [b[:, 0].tolist() for b in model.batches] == [[0.0], [9.0]]
        assert batcher.queued_rows == 0

    run(test, max_batch_size=4, max_queue_delay_us=0)


def test_a_full_queue_answers_overloaded_at_once_and_recovers() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        busy = asyncio.ensure_future(batcher.submit(rows(0, 2)))
        await model.started.wait()
        queued = [asyncio.ensure_future(batcher.submit(rows(10 + i, 1))) for i in range(3)]
        await asyncio.sleep(0)
        assert batcher.queued_rows == 3
        with pytest.raises(Overloaded, match="max_queue_size is 4"):
            await batcher.submit(rows(20, 2))
        model.gate.set()
        await asyncio.gather(busy, *queued)
        assert_doubled(await batcher.submit(rows(30, 2)), rows(30, 2))

    run(test, max_batch_size=2, max_queue_delay_us=0, max_queue_size=4)


def test_close_finishes_queued_work_then_refuses_new_requests() -> None:
    async def main() -> None:
        model = FakeModel()
        batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=2, max_queue_delay_us=0))
        batcher.start()
        model.gate.clear()
        pending = [asyncio.ensure_future(batcher.submit(rows(i, 1))) for i in range(5)]
        await model.started.wait()
        closing = asyncio.ensure_future(batcher.close())
        await asyncio.sleep(0.01)
        with pytest.raises(ModelNotReady):
            await batcher.submit(rows(0, 1))
        model.gate.set()
        await asyncio.wait_for(closing, timeout=10)
        assert [float(p.result()["y"][0, 0]) for p in pending] == [0.0, 2.0, 4.0, 6.0, 8.0]

    asyncio.run(main())


def test_concurrent_batches_are_bounded_by_max_concurrent_batches() -> None:
    async def test(batcher: DynamicBatcher, model: FakeModel) -> None:
        model.gate.clear()
        pending = [asyncio.ensure_future(batcher.submit(rows(i, 1))) for i in range(6)]
        await asyncio.sleep(0.05)
        assert model.sizes == [1, 1]  # two instances busy, the rest wait in the queue
        model.gate.set()
        await asyncio.gather(*pending)
        assert sum(model.sizes) == 6

    run(test, max_batch_size=1, max_queue_delay_us=0, max_concurrent_batches=2)


def test_the_observer_sees_every_batch() -> None:
    async def main() -> None:
        model = FakeModel()
        recorder = Recorder()
        batcher = DynamicBatcher(
            model, BatchPolicy(max_batch_size=3, max_queue_delay_us=1000), observer=recorder
        )
        batcher.start()
        await batcher.submit(rows(0, 5))
        model.fail_with = RuntimeError("boom")
        with pytest.raises(InferenceFailed):
            await batcher.submit(rows(0, 1))
        await batcher.close()
        assert recorder.started == [3, 2, 1]
        assert recorder.finished == [(3, True), (2, True), (1, False)]
        assert batcher.queued_rows == 0

    asyncio.run(main())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_batch_size", 0),
        ("max_queue_delay_us", -1),
        ("max_queue_size", 0),
        ("max_concurrent_batches", 0),
    ],
)
def test_policy_refuses_nonsense(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=field):
        BatchPolicy(**{field: value})


class TaskRecorder(FakeModel):
    """A FakeModel that also records which task launched each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.launched_by: list[asyncio.Task[Any] | None] = []

    def __call__(self, batch: np.ndarray) -> Any:
        self.launched_by.append(asyncio.current_task())
        return super().__call__(batch)


def run_recorded(test: Callable[[DynamicBatcher, TaskRecorder], Awaitable[None]],
                 **policy: Any) -> None:  # fmt: skip
    async def main() -> None:
        model = TaskRecorder()
        batcher = DynamicBatcher(model, BatchPolicy(**policy))
        batcher.start()
        try:
            await asyncio.wait_for(test(batcher, model), timeout=10)
        finally:
            model.gate.set()
            await asyncio.wait_for(batcher.close(), timeout=10)

    asyncio.run(main())


def test_a_lone_request_on_an_idle_batcher_goes_straight_to_the_model() -> None:
    async def test(batcher: DynamicBatcher, model: TaskRecorder) -> None:
        me = asyncio.current_task()
        for start in range(3):  # each arrives at an idle batcher, one after the other
            assert_doubled(await batcher.submit(rows(start, 1)), rows(start, 1))
        # Launched from the caller's own task: no hand-over to the batch-forming task.
        assert model.launched_by == [me, me, me]

    run_recorded(test, max_batch_size=4, max_queue_delay_us=0)


def test_requests_arriving_while_the_model_is_busy_are_still_batched() -> None:
    async def test(batcher: DynamicBatcher, model: TaskRecorder) -> None:
        model.gate.clear()
        first = asyncio.ensure_future(batcher.submit(rows(0, 1)))
        await model.started.wait()  # the first went straight to the model and holds it
        rest = [asyncio.ensure_future(batcher.submit(rows(i, 1))) for i in range(1, 4)]
        await asyncio.sleep(0.01)
        model.gate.set()
        await asyncio.gather(first, *rest)
        assert model.sizes == [1, 3]
        assert model.launched_by[0] is not model.launched_by[1]  # the queue formed the second

    run_recorded(test, max_batch_size=4, max_queue_delay_us=0)


@dataclass(frozen=True)
class TwoWays:
    """A `Runner` whose lone requests run through a model of their own."""

    run: FakeModel
    run_alone: FakeModel


def test_only_a_request_that_found_the_model_idle_runs_through_run_alone() -> None:
    """`run_alone` (the session pool's inline run) gets the straight path's batches; batches
    the queue formed go to `run`."""

    async def main() -> None:
        model, alone = FakeModel(), FakeModel()
        batcher = DynamicBatcher(TwoWays(model, alone), BatchPolicy(4, 0))
        batcher.start()
        try:
            await batcher.submit(rows(0, 1))
            alone.gate.clear()
            first = asyncio.ensure_future(batcher.submit(rows(1, 1)))
            await alone.started.wait()  # straight to run_alone, and holding the slot
            rest = [asyncio.ensure_future(batcher.submit(rows(i, 1))) for i in range(2, 5)]
            await asyncio.sleep(0.01)
            alone.gate.set()
            results = await asyncio.gather(first, *rest)
            for start, result in enumerate(results, 1):
                assert_doubled(result, rows(start, 1))
            assert (alone.sizes, model.sizes) == ([1, 1], [3])
        finally:
            await asyncio.wait_for(batcher.close(), timeout=10)

    asyncio.run(main())


def test_a_batch_run_on_the_loop_is_answered_without_a_turn_of_the_loop() -> None:
    """A run that returns a finished future (the session pool's inline runs): its caller's
    `submit` completes without suspending at all."""

    def inline(batch: np.ndarray) -> asyncio.Future[Outputs]:
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        future.set_result(doubled(batch))
        return future

    async def main() -> None:
        batcher = DynamicBatcher(inline, BatchPolicy(4, 0))
        batcher.start()
        await asyncio.sleep(0)
        submitted = batcher.submit(rows(0, 2))
        with pytest.raises(StopIteration) as done:  # one step runs it to the end
            submitted.send(None)
        assert_doubled(done.value.value, rows(0, 2))
        await batcher.close()

    asyncio.run(main())


def test_queued_batches_that_run_on_the_loop_still_let_it_turn() -> None:
    """A tiny model's queue of batches, each run on the loop: the batch-forming task yields
    between them, so callers are answered and other work runs while the queue drains."""
    order: list[str] = []

    def inline(batch: np.ndarray) -> asyncio.Future[Outputs]:
        order.append("batch")
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        future.set_result(doubled(batch))
        return future

    async def main() -> None:
        batcher = DynamicBatcher(inline, BatchPolicy(2, 1_000_000))  # full batches only
        batcher.start()
        await asyncio.sleep(0)
        requests = [asyncio.ensure_future(batcher.submit(rows(i, 1))) for i in range(16)]
        await asyncio.sleep(0)  # all 16 queued
        asyncio.get_running_loop().call_soon(lambda: order.append("other work"))
        results = await asyncio.gather(*requests)
        for start, result in enumerate(results):
            assert_doubled(result, rows(start, 1))
        await batcher.close()

    asyncio.run(main())
    assert order.count("batch") == 8
    assert order.index("other work") < len(order) - 1  # not after the whole queue


def test_a_lone_request_still_waits_the_delay_when_one_is_set() -> None:
    async def test(batcher: DynamicBatcher, model: TaskRecorder) -> None:
        started = time.monotonic()
        await batcher.submit(rows(0, 1))
        assert time.monotonic() - started >= 0.05  # the policy asked for up to 50 ms
        assert model.launched_by[0] is not asyncio.current_task()

    run_recorded(test, max_batch_size=4, max_queue_delay_us=50_000)


def test_the_straight_path_keeps_deadlines_statistics_and_the_observer() -> None:
    async def main() -> None:
        model, recorder = FakeModel(), Recorder()
        batcher = DynamicBatcher(model, BatchPolicy(max_queue_delay_us=0), observer=recorder)
        batcher.start()
        stages = Stages()
        await batcher.submit(rows(0, 2), stages=stages)
        assert recorder.started == [2] and recorder.finished == [(2, True)]
        assert stages.queue_s >= 0 and stages.infer_s >= 0
        with pytest.raises(DeadlineExpired):
            await batcher.submit(rows(0, 1), deadline=time.monotonic() - 1)
        assert model.sizes == [2]  # the expired request never reached the model
        model.fail_with = ValueError("broken")
        with pytest.raises(InferenceFailed):
            await batcher.submit(rows(0, 1))
        model.fail_with = None
        assert_doubled(await batcher.submit(rows(5, 1)), rows(5, 1))
        await batcher.close()

    asyncio.run(main())
