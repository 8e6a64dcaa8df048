"""One model version: load it (describe, open sessions, warm up), serve it, drain and unload it.

A version is served with its own effective config (`layout.describe_version`): its labels,
tensors, preprocessing and tokenizer come from its folder, so versions of one model can differ in
all of them. Loading never raises: a version that fails is returned in state FAILED with its
reason. Which versions to load, and when to swap, is the repository's business (`repository`).

    loader = VersionLoader(RuntimeOptions())
    version = await loader.load("pets", model_config, repo / "pets" / "2")
    with version.lease():                      # unloading waits for every lease
        outputs = await version.infer(batch)   # {"logits": (n, classes), ...}
    await version.unload()
"""

from __future__ import annotations

import asyncio
import contextlib
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
from onyx.serve.execution.interface import Outputs
from onyx.serve.execution.lone import LoneRuns
from onyx.serve.execution.plan import ExecutionPlan
from onyx.serve.execution.runtime import CUDA, RuntimeOptions, Session
from onyx.serve.execution.session_pool import SessionPool
from onyx.serve.execution.sizing import plan_execution, pool_executor
from onyx.serve.observers import NO_OBSERVERS, Observers

log = logging.getLogger(__name__)

# Sequence length used to warm up models with a dynamic time axis.
WARMUP_SEQUENCE_LENGTH = 16

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
    # How its batches run (sessions, slots, what runs on the event loop), decided once at load
    # (`execution.sizing`); kept after unloading, for the record.
    plan: ExecutionPlan | None = None
    batcher: DynamicBatcher | None = None
    # Runs the plan; the batcher's runner.
    pool: SessionPool | None = None
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
    ) -> Outputs:
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
        if self.pool is not None:
            self.pool.close()
        self.batcher, self.pool = None, None


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
        executor = pool_executor(model, instances, self.runtime)
        try:
            plan = await plan_execution(version.path, config, self.runtime, instances, executor)
            policy = BatchPolicy(
                max_batch_size=config.batching.max_batch_size,
                max_queue_delay_us=config.batching.max_queue_delay_us,
                max_queue_size=config.batching.max_queue_size or self.default_max_queue_size,
                max_concurrent_batches=plan.slots,
            )
            await _warm_up(plan.sessions(), config, policy.max_batch_size, executor)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        log.debug(
            "model %s version %d runs as planned: %s", model, version.version, plan.describe()
        )
        observer = self.observers.batches(model, version.version)
        version.plan = plan
        version.providers = plan.default_session.providers
        version.provider_reason = plan.default_session.provider_reason
        version.pool = SessionPool(plan, executor, self.lone)
        version.batcher = DynamicBatcher(
            version.pool, policy, collate_for(config), observer, length_for(config)
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
