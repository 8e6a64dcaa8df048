"""Where a version's batches run: the pool that runs an `ExecutionPlan` (`plan`), on a free
slot's session, in a session thread or on the event loop.

    plan = await plan_execution(path, config, runtime, instances, executor)
    pool = SessionPool(plan, executor, lone)
    batcher = DynamicBatcher(pool, policy)       # the batcher's `Runner`
    ...
    pool.close()                                 # once the batcher is closed

Each call submits its work before returning (no coroutine to schedule first), so the batcher
can start the next batch ahead of answering the last one. The batcher runs at most one batch
per slot at once (`ExecutionPlan.slots`), so a slot is always free when it calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from onyx.serve.execution.interface import Outputs
from onyx.serve.execution.lone import LoneRuns, can_peek, work_waiting
from onyx.serve.execution.plan import ExecutionPlan
from onyx.serve.execution.runtime import Session
from onyx.serve.execution.thread_choice import ThreadChoice


class SessionPool:
    """Runs batches on the sessions of `plan`: in `executor`'s threads, with a thread choice on
    the session of the thread count it picks (timed), or on the event loop.

    Every batch of a tiny model runs on the loop: it blocks it for less than what handing it
    to a thread and back costs in CPU (a wake-up each way, the GIL taken twice), and RPC-bound
    models are bound by exactly that. A lone request of a small model runs there too while the
    server is otherwise idle (`lone.LoneRuns`): at one client the hand-over is latency.
    """

    def __init__(
        self, plan: ExecutionPlan, executor: ThreadPoolExecutor, lone: LoneRuns | None = None
    ) -> None:
        self.plan = plan
        # The per-batch choice between the plan's thread counts (None with one), its seed the
        # load-time trial's; served batches' times update it.
        self.thread_choice = plan.thread_choice()
        self._executor = executor  # the pool's own: `close` shuts it down
        # Every pool tells `lone` about its threaded batches; only a small model's lone
        # requests run inline, on an event loop whose pending work can be seen (`can_peek`).
        self._lone = lone
        self._inline = lone if plan.lone_allowed and _loop_can_peek() else None
        self._slots = plan.slots
        self._free = list(range(self._slots))

    def run(self, batch: np.ndarray) -> asyncio.Future[Outputs]:
        """Start `batch` on a free slot; its outputs when done."""
        if not self._free:
            raise RuntimeError(f"more batches in flight than the {self._slots} slots")
        loop = asyncio.get_running_loop()
        slot = self._free[-1]
        if batch.size <= self.plan.inline_elements:
            return _finished(loop, self.plan.by_threads[0][slot].run, batch)
        future = loop.run_in_executor(self._executor, self._runner(batch, slot), batch)
        self._free.pop()  # once submitted: a submission that fails keeps its slot
        lone = self._lone
        if lone is not None:
            lone.threaded += 1
        future.add_done_callback(lambda _: self._release(slot))
        return future

    def run_alone(self, batch: np.ndarray) -> asyncio.Future[Outputs]:
        """`run` for a request that found its model idle: on the loop, if it is small enough
        and nobody waits (before the run, nor, for the next ones, during it)."""
        lone = self._inline
        loop = asyncio.get_running_loop()
        if (
            lone is None
            or batch.size > self.plan.lone_elements
            or len(self._free) < self._slots
            or not lone.allows(time.perf_counter())
            or work_waiting(loop)
        ):
            return self.run(batch)
        session = self.plan.lone_session
        runner = session.run if session is not None else self._runner(batch, self._free[-1])
        future = _finished(loop, runner, batch)
        lone.ran(time.perf_counter(), work_waiting(loop))
        return future

    def _runner(self, batch: np.ndarray, slot: int) -> Callable[[np.ndarray], Outputs]:
        choice = self.thread_choice
        if choice is None:
            return self.plan.by_threads[0][slot].run
        option = choice.choose(len(batch), batch.size)
        session = self.plan.by_threads[option][slot]
        return lambda inputs: _timed_run(session, inputs, choice, option)

    def close(self) -> None:
        """Let the pool's threads go (the batcher is closed: no batch runs any more)."""
        self._executor.shutdown(wait=False)

    def _release(self, slot: int) -> None:
        self._free.append(slot)
        if self._lone is not None:
            self._lone.threaded -= 1


def _loop_can_peek() -> bool:
    try:
        return can_peek(asyncio.get_running_loop())
    except RuntimeError:  # made outside a running loop: it will never run inline
        return False


def _finished(
    loop: asyncio.AbstractEventLoop, run: Callable[[np.ndarray], Outputs], batch: np.ndarray
) -> asyncio.Future[Outputs]:
    """Run `batch` in this thread; its outputs (or failure) as a finished future."""
    future: asyncio.Future[Outputs] = loop.create_future()
    try:
        future.set_result(run(batch))
    except Exception as exc:  # the batcher fails the batch's requests with it
        future.set_exception(exc)
    return future


def _timed_run(session: Session, batch: np.ndarray, choice: ThreadChoice, option: int) -> Outputs:
    """Run `batch` and tell `choice` how long it took (wall time in the session's thread:
    what a busy machine takes from it counts)."""
    started = time.perf_counter()
    outputs = session.run(batch)
    choice.record(len(batch), option, time.perf_counter() - started, batch.size)
    return outputs
