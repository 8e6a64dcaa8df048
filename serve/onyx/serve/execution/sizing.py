"""Load-time sizing: open a version's sessions, time them, and decide its `ExecutionPlan`.

A small CPU model (batch of one under SMALL_MODEL_MS) is timed at load on a batch of one and a
full batch, with the default threads and, unless --intra-op-threads is given, with one. Then,
by those times (docs/workers.md tells what each plan does, bench/README.md the figures):

- tiny (a full batch under INLINE_MAX_MS): every batch runs on the event loop, one thread;
- small (a batch of one under LONE_INLINE_MAX_MS): one-thread slots, one per core, and a lone
  request on an idle server inline on all the cores (`_one_thread_slots`);
- otherwise each batch runs on whichever thread count has recently been faster for batches of
  its shape (`thread_choice`): on a few cores a second ORT thread may help or lose the core
  gRPC and Python need, depending on the machine's load of the moment; the load-time times
  seed that choice.

A model on CUDA, or slower than SMALL_MODEL_MS, keeps its default threads untried.

    plan = await plan_execution(path, config, runtime, instances, executor)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onyx.contract.dtypes import DTYPES
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.execution.plan import ExecutionPlan, TrialTime
from onyx.serve.execution.runtime import CUDA, RuntimeOptions, Session, available_cores

log = logging.getLogger(__name__)

# Models whose batch of one runs faster than this with the default threads are also tried with
# one intra-op thread; slower ones use their threads well (bench/README.md: ResNet18 is above).
SMALL_MODEL_MS = 10.0
# A model whose full batch runs in less than this runs every batch on the event loop: the loop
# is held for less than gRPC's own CPU per request costs anyway, and no thread hand-over is
# paid (bench/README.md has gRPC's share of a request).
INLINE_MAX_MS = 0.5
# A model whose batch of one runs in less than this may run a lone request on the event loop
# while the server is otherwise idle (`lone`): the loop is then held no longer than a few
# requests' worth of gRPC work, and only while nobody waits for it (docs/workers.md).
LONE_INLINE_MAX_MS = 2.0
# A small model's one-thread batch slots, at most: more would hold the model that many times
# over and split the load into batches too small to pay; more cores are for more `--workers`.
MAX_ONE_THREAD_SLOTS = 8
# A typical text length for the trial (per-token work is what the threads share).
TRIAL_SEQUENCE_LENGTH = 128
# Timed runs per trial, after a few to warm up: their median is the trial's time.
TRIAL_RUNS = 15


@dataclass(frozen=True)
class _Trial:
    """What the load-time trial ran and measured so far (ms by threads, on its two inputs)."""

    path: Path
    one: np.ndarray  # a batch of one
    full: np.ndarray  # a full batch
    threads: int  # the default intra-op threads
    default_ms: float
    default_full: float

    def text(self) -> str:
        rows = len(self.full)
        return (
            f"batch of one {self.default_ms:.2f} ms, of {rows} {self.default_full:.2f} ms "
            f"with {self.threads}"
        )


def pool_executor(model: str, instances: int, runtime: RuntimeOptions) -> ThreadPoolExecutor:
    """The threads a version's sessions open, are timed and run batches in: one per slot, and
    a small CPU model may get one slot per core (`_one_thread_slots`)."""
    workers = max(instances, runtime.cores or available_cores())
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"ort-{model}")


async def open_sessions(
    path: Path,
    config: pb.ModelConfig,
    runtime: RuntimeOptions,
    instances: int,
    executor: ThreadPoolExecutor,
) -> list[Session]:
    """`instances` sessions of `path`, opened side by side in `executor`'s threads."""
    loop = asyncio.get_running_loop()
    opened = [
        loop.run_in_executor(executor, Session, path, config, runtime, instances)
        for _ in range(instances)
    ]
    return list(await asyncio.gather(*opened))


async def plan_execution(
    path: Path,
    config: pb.ModelConfig,
    runtime: RuntimeOptions,
    instances: int,
    executor: ThreadPoolExecutor,
) -> ExecutionPlan:
    """Open the version's sessions with the intra-op threads that suit it, and plan their use
    (see the module docstring)."""
    sessions = await open_sessions(path, config, runtime, instances, executor)
    first = sessions[0]
    if CUDA in first.providers:
        return ExecutionPlan((tuple(sessions),))
    one, full = _trial_input(config, 1), _trial_input(config, config.batching.max_batch_size)
    default_ms = await _time(executor, first, one)
    if default_ms > SMALL_MODEL_MS:
        return ExecutionPlan((tuple(sessions),))
    default_full = await _time(executor, first, full)
    trial = _Trial(path, one, full, first.intra_op_threads, default_ms, default_full)
    if runtime.intra_op_threads or trial.threads == 1:
        return _tiny_or_not(trial, sessions, default_ms, default_full, trial.text())
    single_runtime = dataclasses.replace(runtime, intra_op_threads=1)
    single = await open_sessions(path, config, single_runtime, instances, executor)
    one_ms, one_full = await _time(executor, single[0], one), await _time(executor, single[0], full)
    text = f"{trial.text()} threads; {one_ms:.2f} and {one_full:.2f} ms with 1"
    if max(one_full, default_full) <= INLINE_MAX_MS:  # threads buy a tiny model nothing
        return _tiny_or_not(trial, single, one_ms, one_full, text)
    if default_ms <= LONE_INLINE_MAX_MS:
        return await _one_thread_slots(trial, config, runtime, sessions, single, executor, text)
    return _thread_choice(trial, sessions, single, one_ms, one_full, text)


async def _time(executor: ThreadPoolExecutor, session: Session, sample: np.ndarray) -> float:
    return await asyncio.get_running_loop().run_in_executor(executor, batch_one_ms, session, sample)


def _thread_choice(
    trial: _Trial,
    default: list[Session],
    single: list[Session],
    one_ms: float,
    one_full: float,
    text: str,
) -> ExecutionPlan:
    """A model of a few ms: each batch on the thread count faster of late, seeded by the trial."""
    seed = tuple(
        TrialTime(len(sample), sample.size, option, ms)
        for sample, times in (
            (trial.one, (one_ms, trial.default_ms)),
            (trial.full, (one_full, trial.default_full)),
        )
        for option, ms in enumerate(times)
    )
    log.info("%s: %s; each batch runs on the thread count faster of late", trial.path, text)
    return ExecutionPlan((tuple(single), tuple(default)), choice_seed=seed)


async def _one_thread_slots(
    trial: _Trial,
    config: pb.ModelConfig,
    runtime: RuntimeOptions,
    default: list[Session],
    single: list[Session],
    executor: ThreadPoolExecutor,
    text: str,
) -> ExecutionPlan:
    """A small model's plan: one one-thread slot per core its instances share (at most
    MAX_ONE_THREAD_SLOTS), each running a batch of its own, and one session on all the
    process's cores for a lone request on an idle server (on the event loop, `lone`).

    Under load a ~1 ms model does more on two cores as two batches side by side than as one
    batch on two threads (their sync points cost it more than it gains; bench/README.md). A
    lone request is faster on all the cores."""
    count = min(len(single) * trial.threads, MAX_ONE_THREAD_SLOTS)
    one_thread = dataclasses.replace(runtime, intra_op_threads=1)
    more = await open_sessions(trial.path, config, one_thread, count - len(single), executor)
    if len(default) == 1:  # the trial's session already runs on all the cores
        lone = default[0]
    else:
        (lone,) = await open_sessions(trial.path, config, runtime, 1, executor)
    slots = (*single, *more)
    log.info(
        "%s: %s; small: %d one-thread slots, a lone request on an idle server runs on the "
        "event loop with %d threads",
        trial.path,
        text,
        len(slots),
        lone.intra_op_threads,
    )
    lone_elements = _lone_elements(trial.one, trial.default_ms)
    return ExecutionPlan((slots,), lone_elements=lone_elements, lone_session=lone)


def _tiny_or_not(
    trial: _Trial, sessions: list[Session], one_ms: float, full_ms: float, text: str
) -> ExecutionPlan:
    """Sessions of one thread count: every batch inline if the model is tiny, else a lone
    request inline on its slot's session if the model is small."""
    if full_ms <= INLINE_MAX_MS:
        log.info(
            "%s: %s; tiny: batches run on the event loop, no thread hand-over", trial.path, text
        )
        return ExecutionPlan((tuple(sessions),), inline_elements=trial.full.size)
    log.info("%s: %s", trial.path, text)
    if one_ms > LONE_INLINE_MAX_MS:
        return ExecutionPlan((tuple(sessions),))
    return ExecutionPlan((tuple(sessions),), lone_elements=_lone_elements(trial.one, one_ms))


def _lone_elements(one: np.ndarray, one_ms: float) -> int:
    """The largest batch (in input elements) a lone request may run inline with: what the
    trial's batch of one (`one_ms`) says runs in about LONE_INLINE_MAX_MS."""
    return max(1, int(one.size * LONE_INLINE_MAX_MS / max(one_ms, 1e-3)))


def batch_one_ms(session: Session, sample: np.ndarray) -> float:
    """Median milliseconds of `session.run(sample)`, after a few runs to warm it up."""
    for _ in range(3):
        session.run(sample)
    times = []
    for _ in range(TRIAL_RUNS):
        started = time.perf_counter()
        session.run(sample)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def _trial_input(config: pb.ModelConfig, rows: int) -> np.ndarray:
    dtype = DTYPES[config.input.dtype].numpy
    dims = (TRIAL_SEQUENCE_LENGTH if d == -1 else d for d in config.input.dims[1:])
    return np.zeros([max(1, rows), *dims], dtype=dtype)
