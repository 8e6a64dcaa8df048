"""Dynamic batching: many small requests in, few large batches through the model.

The batcher knows nothing of gRPC or ONNX Runtime. It takes arrays whose first axis is the batch
axis and an async `run` function that returns the batch's outputs by name (`Outputs`) -- or a
`Runner`, which may also run a request that found the model idle its own way -- and:

* forms a batch as soon as `max_batch_size` rows are queued, or when the oldest queued request
  has waited `max_queue_delay_us` -- it never waits while a full batch could already be formed;
* keeps at most `max_concurrent_batches` batches in flight, so under load requests pile up while
  the model is busy and the next batch comes out larger (adaptive batching for free);
* checks that every output has the batch's rows and gives each caller its own rows of each;
* splits a request larger than `max_batch_size` into chunks and reassembles the results in order;
  the chunks take turns with other requests (one queued at a time per concurrent batch), so a
  huge request cannot hold the model while everyone else waits behind it;
* when inputs have a length (text), takes the oldest request and, from the next few, those
  closest to it in length, never padding an input to more than `MAX_PADDING_RATIO` times its own
  length: a request of 100x the usual length runs alone, it never makes others pay for it;
* refuses work beyond `max_queue_size` queued rows at once (`Overloaded`), so memory stays bounded;
* drops requests whose deadline passed or whose caller was cancelled before they reach the model;
* fails *every* request of a failing batch, so nobody waits forever;
* sends a request that arrives at an idle batcher (nothing queued, a batch slot free) with no
  reason to wait (`max_queue_delay_us` 0, or a full batch) to the model from the caller's own
  task, through `Runner.run_alone`: no hand-over to the batch-forming task, no task per batch
  (the runner may even run it on the event loop). Everything else about it --
  deadline, overload, statistics, observer, cancellation -- is as for any other request.

    batcher = DynamicBatcher(run, BatchPolicy(max_batch_size=8, max_queue_delay_us=2000))
    batcher.start()
    outputs = await batcher.submit(inputs)        # (n, ...) -> {"logits": (n, ...), ...}
    await batcher.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from onyx.contract.errors import DeadlineExpired, InferenceFailed, ModelNotReady, Overloaded
from onyx.serve.execution.interface import Outputs

log = logging.getLogger(__name__)

RunBatch = Callable[[np.ndarray], Awaitable[Outputs]]
# Joins the queued inputs of one batch into one array (text models pad to the longest here).
Collate = Callable[[Sequence[np.ndarray]], np.ndarray]
# How long one queued input is, for inputs padded to their longest in a batch (text: tokens).
Length = Callable[[np.ndarray], int]
# How far past the oldest request the batcher looks for requests of a similar length, in batches.
LOOKAHEAD_BATCHES = 4
# An input with a length is padded to at most this many times its own length in a batch...
MAX_PADDING_RATIO = 2
# ... unless the batch's longest is this short anyway (padding short sequences costs nothing).
PADDING_SLACK_LENGTH = 32


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int = 8
    # Wait this long for more requests, only while a full batch cannot be formed yet.
    max_queue_delay_us: int = 1000
    # Queued rows beyond this are refused at once rather than held in memory.
    max_queue_size: int = 1024
    # Batches running at once; one per ONNX Runtime session instance.
    max_concurrent_batches: int = 1

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_queue_delay_us < 0:
            raise ValueError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")
        if self.max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {self.max_queue_size}")
        if self.max_concurrent_batches < 1:
            raise ValueError(
                f"max_concurrent_batches must be >= 1, got {self.max_concurrent_batches}"
            )


@runtime_checkable
class Runner(Protocol):
    """Where batches run (`execution.session_pool.SessionPool`): `run` takes the batches the
    queue forms, `run_alone` a request that found the batcher idle (`DynamicBatcher._straight`),
    which the runner may run differently (inline on the event loop while nobody waits)."""

    @property
    def run(self) -> RunBatch: ...

    @property
    def run_alone(self) -> RunBatch: ...


@dataclass(frozen=True)
class EveryBatchAlike:
    """A `Runner` that runs every batch, lone or not, through one function."""

    run: RunBatch

    @property
    def run_alone(self) -> RunBatch:
        return self.run


class BatchObserver(Protocol):
    """Hooks for metrics; every method is called on the event loop and must not block."""

    def batch_started(self, size: int, queue_waits_s: Sequence[float]) -> None: ...

    def batch_finished(self, size: int, compute_s: float, ok: bool) -> None: ...


@dataclass
class Stages:
    """Where one submitted request spent its time (statistics): `submit` fills it in."""

    queue_s: float = 0.0  # queued until its last chunk went to the model
    infer_s: float = 0.0  # from then until its outputs were back


@dataclass(eq=False)  # each queued request is itself: identity, not field, equality
class _Item:
    inputs: np.ndarray
    future: asyncio.Future[Outputs]
    deadline: float | None  # time.monotonic() seconds
    enqueued: float = field(default_factory=time.monotonic)
    launched: float | None = None  # when its batch went to the model

    @property
    def rows(self) -> int:
        return int(self.inputs.shape[0])


def concatenate(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)


class DynamicBatcher:
    def __init__(
        self,
        run: Runner | RunBatch,
        policy: BatchPolicy = BatchPolicy(),
        collate: Collate = concatenate,
        observer: BatchObserver | None = None,
        length: Length | None = None,
    ) -> None:
        # A plain function runs every batch, a request that found the model idle included.
        self._runner = run if isinstance(run, Runner) else EveryBatchAlike(run)
        self.policy = policy
        self._collate = collate
        self._length = length
        self._observer = observer
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        # Rows of chunked requests not queued yet (they wait for their turn; see `_chunked`).
        self._held_rows = 0
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(policy.max_concurrent_batches)
        # Batches on the model now (their `run` futures); `close` waits for them.
        self._running: set[asyncio.Future[Outputs]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._form_batches())

    async def submit(
        self, inputs: np.ndarray, deadline: float | None = None, stages: Stages | None = None
    ) -> Outputs:
        """Queue `inputs` (n rows) and return each of the model's outputs' n rows, in order.

        `deadline` is a `time.monotonic()` instant after which the request is dropped unrun;
        `stages`, when given, receives the request's time queued and on the model.
        """
        if self._closed:
            raise ModelNotReady("model is unloading; no new requests are accepted")
        rows = int(inputs.shape[0])
        if rows == 0:
            raise ValueError("submit() needs at least one row")
        if self._queued_rows + self._held_rows + rows > self.policy.max_queue_size:
            raise Overloaded(
                f"queue full: {self._queued_rows + self._held_rows} inputs queued, "
                f"max_queue_size is {self.policy.max_queue_size}; retry later"
            )
        submitted = time.monotonic()
        launches: list[float] = []  # when each of the request's batches went to the model
        if rows <= self.policy.max_batch_size:
            if self._idle_for(rows):
                result = await self._straight(inputs, deadline, launches)
            else:
                result = await self._one(inputs, deadline, launches)
        else:
            result = await self._chunked(inputs, deadline, launches)
        if stages is not None:
            done = time.monotonic()
            launched = max(launches, default=done)
            stages.queue_s = launched - submitted
            stages.infer_s = done - launched
        return result

    def _idle_for(self, rows: int) -> bool:
        """Would a batch of just these rows be launched at once anyway? Nothing queued or
        held, a batch slot free, and no delay to wait for more (or the batch is full)."""
        return (
            not self._queue
            and not self._held_rows
            and not self._slots.locked()
            and (self.policy.max_queue_delay_us == 0 or rows >= self.policy.max_batch_size)
        )

    async def _straight(
        self, inputs: np.ndarray, deadline: float | None, launches: list[float]
    ) -> Outputs:
        """The idle fast path: take the free slot and launch this request alone, now."""
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise DeadlineExpired("deadline passed before the request reached the model")
        item = _Item(inputs, asyncio.get_running_loop().create_future(), deadline, now)
        await self._slots.acquire()  # free (checked above): returns without suspending
        self._start_batch([item], alone=True)
        return await self._answer(item, launches)

    async def _one(
        self, inputs: np.ndarray, deadline: float | None, launches: list[float]
    ) -> Outputs:
        return await self._answer(self._enqueue(inputs, deadline), launches)

    async def _answer(self, item: _Item, launches: list[float]) -> Outputs:
        try:
            result = await item.future
            launches.append(item.launched or time.monotonic())
            return result
        except BaseException:
            item.future.cancel()  # a cancelled caller takes its queued input with it
            raise

    async def _chunked(
        self, inputs: np.ndarray, deadline: float | None, launches: list[float]
    ) -> Outputs:
        """A request larger than a batch goes in chunk by chunk, at most one per concurrent
        batch queued or running at once, each next chunk behind what arrived meanwhile: a big
        request takes turns with the others, it never holds the model for its whole size."""
        step = self.policy.max_batch_size
        chunks = [inputs[i : i + step] for i in range(0, len(inputs), step)]
        turns = asyncio.Semaphore(self.policy.max_concurrent_batches)
        waiting = set(range(len(chunks)))  # chunks not queued yet: counted as queued rows
        self._held_rows += len(inputs)

        async def chunk(index: int) -> Outputs:
            async with turns:
                waiting.discard(index)
                self._held_rows -= len(chunks[index])
                return await self._one(chunks[index], deadline, launches)

        tasks = [asyncio.ensure_future(chunk(index)) for index in range(len(chunks))]
        try:
            return _joined(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            self._held_rows -= sum(len(chunks[index]) for index in waiting)

    def _enqueue(self, inputs: np.ndarray, deadline: float | None) -> _Item:
        item = _Item(inputs, asyncio.get_running_loop().create_future(), deadline)
        self._queue.append(item)
        self._queued_rows += item.rows
        self._arrived.set()
        return item

    async def close(self) -> None:
        """Stop accepting, finish everything queued and in flight, then stop."""
        self._closed = True
        while self._queue or self._running or self._held_rows:
            await asyncio.sleep(0.001)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    async def _form_batches(self) -> None:
        while True:
            # Work first, then a slot: an idle batcher holds no slot, so a lone request can
            # take it straight (`_straight`).
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            self._start_batch(batch)

    async def _next_batch(self) -> list[_Item]:
        """Wait for a full batch or the oldest request's delay, whichever first."""
        delay_s = self.policy.max_queue_delay_us / 1e6
        loop = asyncio.get_running_loop()
        while self._queued_rows < self.policy.max_batch_size and self._queue:
            remaining = self._queue[0].enqueued + delay_s - time.monotonic()
            if remaining <= 0:
                break
            self._arrived.clear()
            # A timer, not asyncio.wait_for: that makes a task per wait.
            timer = loop.call_later(remaining, self._arrived.set)
            try:
                await self._arrived.wait()
            finally:
                timer.cancel()
        return self._take_batch()

    def _start_batch(self, batch: list[_Item], alone: bool = False) -> None:
        """Launch `batch` (its slot taken) and have it answered when the model is done.

        Finishing is a done callback, not a task: when a batch finishes, its slot is released
        before its callers are woken, so the next batch reaches the model before the event loop
        turns to answering the previous one, and no task is made per batch. A lone request's
        batch that ran on the event loop (its future done already) is answered at once: two
        turns of the loop less (bench/README.md, "Small measurements behind execution choices").
        Not a queue's batches: `_form_batches` would then take the whole queue in one step of
        its task, and nobody would be answered, nor anything else run, until it was empty."""
        runner = self._runner
        batch, pending, started = self._launch(batch, runner.run_alone if alone else runner.run)
        running = asyncio.ensure_future(pending)
        if alone and running.done():
            self._finish_batch(batch, running, started)
            return
        self._running.add(running)
        running.add_done_callback(lambda done: self._finish_batch(batch, done, started))

    def _take_batch(self) -> list[_Item]:
        window = list(itertools.islice(self._queue, self.policy.max_batch_size * LOOKAHEAD_BATCHES))
        dead = _dead(window)
        live = [item for item in window if item not in dead]
        if self._length is not None and live:
            chosen = self._closest_in_length(live, self._length)
        else:
            chosen = self._oldest_first(live)
        self._remove(dead | set(chosen))
        return chosen

    def _remove(self, gone: set[_Item]) -> None:
        if all(item in gone for item in itertools.islice(self._queue, len(gone))):
            for _ in gone:  # the common case: the front of the queue
                self._queue.popleft()
        else:
            self._queue = deque(item for item in self._queue if item not in gone)
        self._queued_rows -= sum(item.rows for item in gone)

    def _oldest_first(self, live: list[_Item]) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        for item in live:
            if rows + item.rows > self.policy.max_batch_size:
                break
            batch.append(item)
            rows += item.rows
        return batch

    def _closest_in_length(self, live: list[_Item], length: Length) -> list[_Item]:
        """The oldest request, then those of the next few closest to it in length (the oldest
        of equals first) while the padding stays bounded: every request still reaches the
        front, and batches pad little."""
        lengths = [length(item.inputs) for item in live]
        target = lengths[0]
        ranked = sorted(range(len(live)), key=lambda i: (abs(lengths[i] - target), i))
        batch: list[_Item] = []
        rows, shortest, longest = 0, target, target
        for index in ranked:
            item, size = live[index], lengths[index]
            low, high = min(shortest, size), max(longest, size)
            if rows + item.rows > self.policy.max_batch_size:
                continue
            if batch and high > max(PADDING_SLACK_LENGTH, MAX_PADDING_RATIO * low):
                continue
            batch.append(item)
            rows, shortest, longest = rows + item.rows, low, high
        return sorted(batch, key=lambda item: item.enqueued)

    def _launch(
        self, batch: list[_Item], run: RunBatch
    ) -> tuple[list[_Item], Awaitable[Outputs], float]:
        """Collate `batch` and start the model on it; returns what `_finish_batch` awaits."""
        rows = sum(item.rows for item in batch)
        started = time.monotonic()
        for item in batch:
            item.launched = started
        if self._observer is not None:
            self._observer.batch_started(rows, [started - item.enqueued for item in batch])
        try:
            # A run function that submits its work before returning (as `SessionPool.run` does)
            # starts the model now; a coroutine function starts when awaited.
            pending = run(self._collate([item.inputs for item in batch]))
        except Exception as exc:
            pending = _failed(exc)
        return batch, pending, started

    def _finish_batch(
        self, batch: list[_Item], done: asyncio.Future[Outputs], started: float
    ) -> None:
        self._running.discard(done)
        rows = sum(item.rows for item in batch)
        try:
            if done.cancelled():
                raise RuntimeError("the model run was cancelled")
            outputs = done.result()
            _check_rows(outputs, rows)
        except Exception as exc:
            log.error("batch of %d inputs failed", rows, exc_info=exc)
            self._batch_done(rows, started, ok=False)
            self._slots.release()
            _fail_all(batch, InferenceFailed(f"inference failed on a batch of {rows}: {exc}"))
            return
        self._batch_done(rows, started, ok=True)
        self._slots.release()  # first: the next batch starts before these callers wake
        _deliver(batch, outputs)

    def _batch_done(self, rows: int, started: float, ok: bool) -> None:
        if self._observer is not None:
            self._observer.batch_finished(rows, time.monotonic() - started, ok)


async def _failed(exc: Exception) -> Outputs:
    raise exc


def _dead(window: list[_Item]) -> set[_Item]:
    """The queued requests in `window` whose caller left or whose deadline passed (the latter
    are answered DEADLINE_EXCEEDED here)."""
    now = time.monotonic()
    dead: set[_Item] = set()
    for item in window:
        if item.future.done():  # cancelled by its caller while queued
            dead.add(item)
        elif item.deadline is not None and now >= item.deadline:
            item.future.set_exception(
                DeadlineExpired(f"deadline passed after {now - item.enqueued:.3f}s in the queue")
            )
            dead.add(item)
    return dead


def _check_rows(outputs: Outputs, rows: int) -> None:
    """Every output must have one row per input: a caller's rows are cut out of each."""
    if not outputs:
        raise RuntimeError(f"model returned no outputs for a batch of {rows} rows")
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != rows:
            raise RuntimeError(
                f"model returned {array.shape} for output {name!r} for a batch of {rows} rows"
            )


def _deliver(batch: list[_Item], outputs: Outputs) -> None:
    start = 0
    for item in batch:
        if not item.future.done():
            end = start + item.rows
            item.future.set_result({name: array[start:end] for name, array in outputs.items()})
        start += item.rows


def _joined(chunks: Sequence[Outputs]) -> Outputs:
    """A chunked request's outputs: each output's chunks joined again, in order."""
    return {name: concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}


def _fail_all(batch: list[_Item], error: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(error)
