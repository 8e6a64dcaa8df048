"""One model version: load it (describe, open sessions, warm up), serve it, drain and unload it.

A version is served with its own effective config (`layout.describe_version`): its labels,
tensors, preprocessing and tokenizer come from its folder, so versions of one model can differ in
all of them. Loading never raises: a version that fails is returned in state FAILED with its
reason. Which versions to load, and when to swap, is the repository's business (`repository`).

    loader = VersionLoader(RuntimeOptions())
    version = await loader.load("pets", model_config, repo / "pets" / "2")
    with version.lease():                      # unloading waits for every lease
        outputs = await version.infer(batch)
    await version.unload()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onyx.contract.dtypes import DTYPES
from onyx.contract.errors import ConfigError, ModelNotReady
from onyx.contract.layout import MODEL_FILE, describe_version, inside
from onyx.contract.text import TextEncoder, load_encoder, pad_rows
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.batching import (
    BatchPolicy,
    Collate,
    DynamicBatcher,
    Length,
    Stages,
    concatenate,
)
from onyx.serve.execution.lone import LoneRuns
from onyx.serve.execution.runtime import CUDA, RuntimeOptions, Session, available_cores
from onyx.serve.execution.session_pool import SessionPool, SessionSets
from onyx.serve.execution.thread_choice import ThreadChoice
from onyx.serve.observers import NO_OBSERVERS, Observers

log = logging.getLogger(__name__)

# Sequence length used to warm up models with a dynamic time axis.
WARMUP_SEQUENCE_LENGTH = 16
# Models whose batch of one runs faster than this with the default threads are also tried with
# one intra-op thread (`_sized_sessions`); slower ones use their threads well.
SMALL_MODEL_MS = 10.0
# A model whose full batch runs in less than this runs on the event loop (`SessionPool`): on
# the 2-vCPU machine gRPC's own CPU per request was ~0.4 ms, so the loop is held for less
# than one request costs anyway, and no thread hand-over is paid.
INLINE_MAX_MS = 0.5
# A model whose batch of one runs in less than this may run a lone request on the event loop
# while the server is otherwise idle (`lone`): the loop is then held no longer than a few
# requests' worth of gRPC work, and only while nobody waits for it.
LONE_INLINE_MAX_MS = 2.0
# A small model's one-thread batch slots, at most (`_one_thread_slots`).
MAX_ONE_THREAD_SLOTS = 8
# A typical text length for that trial (per-token work is what the threads share).
TRIAL_SEQUENCE_LENGTH = 128
TRIAL_RUNS = 15

# (mtime_ns, size, inode) of a file, None when it is missing.
FileStamp = tuple[int, int, int] | None
# Every file of a version folder (relative path, stamp), sorted: a file added, removed or changed
# anywhere in it (model.onnx.data landing after model.onnx) means "load it again".
FolderStamp = tuple[tuple[str, FileStamp], ...]


@dataclass
class ModelVersion:
    """One version of one model: its config, sessions, batcher and state."""

    version: int
    path: Path
    state: int = api.VERSION_STATE_LOADING
    reason: str = ""
    # The config this version is served with (model policy + its own description); None until
    # its description was read.
    config: pb.ModelConfig | None = None
    providers: list[str] = field(default_factory=list)
    # Why these providers (e.g. "no NVIDIA driver (libcuda.so.1) on this machine").
    provider_reason: str = ""
    # Seconds loading and warming up took.
    load_seconds: float = 0.0
    # ONNX Runtime's intra-op thread counts this version's sessions have (`_sized_sessions`);
    # with more than one, `thread_choice` picks one per batch.
    intra_op_threads: tuple[int, ...] = ()
    thread_choice: ThreadChoice | None = None
    batcher: DynamicBatcher | None = None
    executor: ThreadPoolExecutor | None = None
    # Text models: this version's tokenizer + vocabulary (each training builds its own).
    text_encoder: TextEncoder | None = None
    # The version's files as they were when loaded; different stamps mean "load it again".
    stamp: FolderStamp | None = None
    _leases: int = 0
    _drained: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ready(self) -> bool:
        return self.state == api.VERSION_STATE_READY

    @contextlib.contextmanager
    def lease(self) -> Iterator[ModelVersion]:
        """Hold the version for one request: unloading waits until every lease is returned."""
        self._leases += 1
        self._drained.clear()
        try:
            yield self
        finally:
            self._leases -= 1
            if self._leases == 0:
                self._drained.set()

    async def infer(
        self, inputs: np.ndarray, deadline: float | None = None, stages: Stages | None = None
    ) -> np.ndarray:
        # A leased version may be unloading: it still finishes the requests that hold it.
        if self.batcher is None or self.state not in _SERVING_STATES:
            raise ModelNotReady(f"version {self.version} is not ready")
        return await self.batcher.submit(inputs, deadline, stages)

    async def unload(self) -> None:
        """Take no new requests, let the leased ones finish, then free sessions and threads."""
        if self.state == api.VERSION_STATE_READY:
            self.state = api.VERSION_STATE_UNLOADING
        if self._leases:
            await self._drained.wait()
        if self.batcher is not None:
            await self.batcher.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False)
        self.batcher, self.executor = None, None


_SERVING_STATES = (api.VERSION_STATE_READY, api.VERSION_STATE_UNLOADING)


def file_stamp(path: Path) -> FileStamp:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def folder_stamp(folder: Path) -> FolderStamp:
    """What identifies a version's contents: every file in its folder (symlinks followed to
    what they name, sub-folders included), by size, mtime and inode."""
    stamps: list[tuple[str, FileStamp]] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            path = Path(root, name)
            stamps.append((str(path.relative_to(folder)), file_stamp(path)))
    return tuple(sorted(stamps))


@dataclass(frozen=True)
class VersionLoader:
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    # Server-wide cap on queued inputs per version when its config sets none.
    default_max_queue_size: int = 1024
    # ONNX Runtime sessions per version for every model (0: each config's `instances`).
    instances: int = 0
    # What loads and batches report to (metrics); no-ops by default.
    observers: Observers = NO_OBSERVERS
    # The server's inline runs of lone requests, shared by every version it loads.
    lone: LoneRuns = field(default_factory=LoneRuns)

    async def load(self, model: str, model_config: pb.ModelConfig, folder: Path) -> ModelVersion:
        """Describe, open, warm up and start the version in `folder`; failures are recorded."""
        number = int(folder.name)
        version = ModelVersion(number, folder / MODEL_FILE, stamp=folder_stamp(folder))
        self.observers.loads.load_started(model, number)
        started = time.monotonic()
        try:
            _check_model_file(folder)
            version.config = describe_version(model_config, folder)
            if version.config.task == pb.TASK_TEXT:
                version.text_encoder = load_encoder(version.config.text, folder)
            await self._start(model, version, version.config)
        except Exception as exc:
            version.state, version.reason = api.VERSION_STATE_FAILED, str(exc)
            log.error("model %s version %d failed to load: %s", model, number, exc)
            self.observers.loads.load_failed(model, number, version.reason)
            return version
        version.load_seconds = time.monotonic() - started
        self.observers.loads.load_succeeded(model, number, version.load_seconds)
        log.info(
            "model %s version %d ready on %s (%s) in %.2fs",
            model,
            number,
            version.providers[0],
            version.provider_reason,
            version.load_seconds,
        )
        return version

    async def _start(self, model: str, version: ModelVersion, config: pb.ModelConfig) -> None:
        instances = self.instances or max(1, config.instances)
        # A thread per slot: a small CPU model may get one slot per core (`_one_thread_slots`).
        workers = max(instances, self.runtime.cores or available_cores())
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"ort-{model}")
        try:
            runtime = self.runtime
            sets = await _sized_sessions(version.path, config, runtime, instances, executor)
            policy = BatchPolicy(
                max_batch_size=config.batching.max_batch_size,
                max_queue_delay_us=config.batching.max_queue_delay_us,
                max_queue_size=config.batching.max_queue_size or self.default_max_queue_size,
                max_concurrent_batches=len(sets.by_threads[0]),
            )
            await _warm_up(sets.every(), config, policy.max_batch_size, executor)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        observer = self.observers.batches(model, version.version)
        version.executor = executor
        first = sets.by_threads[-1][0]  # the default threads' sessions
        version.providers = first.providers
        version.provider_reason = first.provider_reason
        version.thread_choice = sets.choice
        version.intra_op_threads = tuple(group[0].intra_op_threads for group in sets.by_threads)
        pool = SessionPool(sets, executor, self.lone)
        version.batcher = DynamicBatcher(
            pool.run,
            policy,
            collate_for(config),
            observer,
            length_for(config),
            run_alone=pool.run_alone,
        )
        version.batcher.start()
        version.state = api.VERSION_STATE_READY


def _check_model_file(folder: Path) -> None:
    """The version's model.onnx is there, inside its folder: checked first, so an empty or
    half-copied folder is reported as such, not as whatever its description lacks."""
    path = folder / MODEL_FILE
    if not path.is_file():
        empty = not any(folder.iterdir())
        raise ConfigError(f"version folder {folder} is empty" if empty else f"{path} is missing")
    inside(path, folder, "model file")


async def _open_sessions(
    path: Path,
    config: pb.ModelConfig,
    runtime: RuntimeOptions,
    instances: int,
    executor: ThreadPoolExecutor,
) -> list[Session]:
    loop = asyncio.get_running_loop()
    opened = [
        loop.run_in_executor(executor, Session, path, config, runtime, instances)
        for _ in range(instances)
    ]
    return list(await asyncio.gather(*opened))


async def _sized_sessions(
    path: Path,
    config: pb.ModelConfig,
    runtime: RuntimeOptions,
    instances: int,
    executor: ThreadPoolExecutor,
) -> SessionSets:
    """Sessions with the intra-op threads that suit this model, and how to run them.

    A small CPU model (batch of one under SMALL_MODEL_MS) is timed at load on a batch of one
    and a full batch, with the default threads and, unless --intra-op-threads is given, with
    one. Then, by those times:
    - tiny (a full batch under INLINE_MAX_MS): every batch runs on the event loop, one thread;
    - small (a batch of one under LONE_INLINE_MAX_MS): one-thread slots, one per core, and a
      lone request on an idle server inline on all the cores (`_one_thread_slots`);
    - otherwise each batch runs on whichever thread count has recently been faster for batches
      of its shape (`ThreadChoice`): on a few cores a second ORT thread may help or lose the
      core gRPC and Python need, depending on the machine's load of the moment; the load-time
      times seed that choice.
    """
    sessions = await _open_sessions(path, config, runtime, instances, executor)
    first = sessions[0]
    if CUDA in first.providers:
        return SessionSets([sessions])
    loop = asyncio.get_running_loop()
    one, rows = _trial_input(config, 1), max(1, config.batching.max_batch_size)
    default_ms = await loop.run_in_executor(executor, batch_one_ms, first, one)
    if default_ms > SMALL_MODEL_MS:
        return SessionSets([sessions])
    full = _trial_input(config, rows)
    default_full = await loop.run_in_executor(executor, batch_one_ms, first, full)
    threads = first.intra_op_threads
    trials = f"batch of one {default_ms:.2f} ms, of {rows} {default_full:.2f} ms with {threads}"
    if runtime.intra_op_threads or threads == 1:
        return _tiny_or_not(path, [sessions], one, default_ms, default_full, full.size, trials)
    single_options = dataclasses.replace(runtime, intra_op_threads=1)
    single = await _open_sessions(path, config, single_options, instances, executor)
    one_ms = await loop.run_in_executor(executor, batch_one_ms, single[0], one)
    one_full = await loop.run_in_executor(executor, batch_one_ms, single[0], full)
    trials += f" threads; {one_ms:.2f} and {one_full:.2f} ms with 1"
    if max(one_full, default_full) <= INLINE_MAX_MS:  # threads buy a tiny model nothing
        return _tiny_or_not(path, [single], one, one_ms, one_full, full.size, trials)
    if default_ms <= LONE_INLINE_MAX_MS:
        lone_elements = _lone_elements(one, default_ms)
        return await _one_thread_slots(
            path, config, runtime, sessions, single, threads, executor, lone_elements, trials
        )
    choice = ThreadChoice((1, threads))
    for sample, times in ((one, (one_ms, default_ms)), (full, (one_full, default_full))):
        for option, ms in enumerate(times):
            choice.record(len(sample), option, ms / 1e3, sample.size)
    log.info("%s: %s; each batch runs on the thread count faster of late", path, trials)
    return SessionSets([single, sessions], choice)


async def _one_thread_slots(
    path: Path,
    config: pb.ModelConfig,
    runtime: RuntimeOptions,
    default: list[Session],
    single: list[Session],
    threads: int,
    executor: ThreadPoolExecutor,
    lone_elements: int,
    trials: str,
) -> SessionSets:
    """A small model's sessions: one one-thread slot per core its instances share (at most
    MAX_ONE_THREAD_SLOTS), each running a batch of its own, and one session on all the
    process's cores for a lone request on an idle server (on the event loop, `lone`).

    Under load a ~1 ms model does more on two cores as two batches side by side than as one
    batch on two threads (their sync points cost it more than it gains): 1.1-1.3x the BiLSTM's
    requests/s at 2-32 clients (bench/README.md). A lone request is faster on all the cores.
    More slots than MAX_ONE_THREAD_SLOTS would hold the model that many times over and split
    the load into batches too small to pay; more cores are for more `--workers`."""
    count = min(len(single) * threads, MAX_ONE_THREAD_SLOTS)
    one_thread = dataclasses.replace(runtime, intra_op_threads=1)
    more = await _open_sessions(path, config, one_thread, count - len(single), executor)
    if len(default) == 1:  # the trial's session already runs on all the cores
        lone = default[0]
    else:
        (lone,) = await _open_sessions(path, config, runtime, 1, executor)
    slots = [*single, *more]
    log.info(
        "%s: %s; small: %d one-thread slots, a lone request on an idle server runs on the "
        "event loop with %d threads",
        path,
        trials,
        len(slots),
        lone.intra_op_threads,
    )
    return SessionSets([slots], lone_elements=lone_elements, lone_session=lone)


def _lone_elements(one: np.ndarray, one_ms: float) -> int:
    """The largest batch (in input elements) a lone request may run inline with: what the
    trial's batch of one (`one_ms`) says runs in about LONE_INLINE_MAX_MS."""
    return max(1, int(one.size * LONE_INLINE_MAX_MS / max(one_ms, 1e-3)))


def _tiny_or_not(
    path: Path,
    by_threads: list[list[Session]],
    one: np.ndarray,
    one_ms: float,
    full_ms: float,
    full_elements: int,
    trials: str,
) -> SessionSets:
    """Sessions of one thread count: every batch inline if the model is tiny, else a lone
    request inline on its slot's session if the model is small."""
    if full_ms <= INLINE_MAX_MS:
        log.info("%s: %s; tiny: batches run on the event loop, no thread hand-over", path, trials)
        return SessionSets(by_threads, inline_elements=full_elements)
    log.info("%s: %s", path, trials)
    if one_ms > LONE_INLINE_MAX_MS:
        return SessionSets(by_threads)
    return SessionSets(by_threads, lone_elements=_lone_elements(one, one_ms))


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
    return np.zeros([rows, *dims], dtype=dtype)


def collate_for(config: pb.ModelConfig) -> Collate:
    """How queued inputs join into one batch: concatenated, or right-padded for text."""
    if config.task != pb.TASK_TEXT:
        return concatenate
    pad = functools.partial(pad_rows, pad_id=int(config.text.pad_id))
    # One request alone is already padded to its longest: no second copy.
    return lambda blocks: blocks[0] if len(blocks) == 1 else pad(blocks)


def length_for(config: pb.ModelConfig) -> Length | None:
    """Text inputs pad to the longest of a batch: the batcher groups them by token count."""
    if config.task != pb.TASK_TEXT:
        return None
    return lambda inputs: int(inputs.shape[1])


def warmup_batch_sizes(max_batch_size: int, on_gpu: bool) -> list[int]:
    """The batch sizes to run once at load so no user pays for a first run.

    On CUDA every size the batcher can form gets its own kernels (cuDNN picks algorithms per
    shape); on CPU the first run and the largest batch cover the allocations that matter.
    """
    if on_gpu:
        return list(range(1, max_batch_size + 1))
    return sorted({1, max_batch_size})


async def _warm_up(
    sessions: Sequence[Session],
    config: pb.ModelConfig,
    max_batch_size: int,
    executor: ThreadPoolExecutor,
) -> None:
    """Run every session (not just one) over the batch sizes the batcher will form."""
    loop = asyncio.get_running_loop()
    dtype = DTYPES[config.input.dtype].numpy
    sizes = warmup_batch_sizes(max_batch_size, CUDA in sessions[0].providers)
    for session in sessions:
        for size in sizes:
            dims = (WARMUP_SEQUENCE_LENGTH if d == -1 else d for d in config.input.dims[1:])
            await loop.run_in_executor(executor, session.run, np.zeros([size, *dims], dtype=dtype))
