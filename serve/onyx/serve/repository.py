"""The model repository: `<root>/<name>/config.pbtxt` and `<root>/<name>/<version>/model.onnx`.

Every model found at start is loaded (with `model_control="explicit"`, only the ones named); a
model or version that fails to load is recorded with its reason (reported by `GetModel`, health
and `RepositoryIndex`) while the others serve. Each loaded version owns its ONNX Runtime sessions
and its dynamic batcher.

`sync(name)` brings one model in line with the disk, and `poll()` does it for all of them:

* a new version folder is loaded and warmed up, then switched in (one dict assignment: the
  newest ready version serves from the next request on);
* a version the policy no longer wants is dropped once a wanted one is ready (so a new version
  that fails to load leaves the old one serving), and a version whose folder is gone at once;
* an edited config loads the whole model afresh beside the old one, which keeps serving unless
  the new one is ready;
* a dropped version is drained: it takes no new requests, every request holding a `lease` on it
  finishes, then its batcher and sessions go.

    repository = Repository(Path("models"))
    await repository.load_all()
    model = repository.get("pets")
    version = model.version()          # the newest ready one
    with version.lease():
        outputs = await version.infer(batch)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.batching import (
    BatchObserver,
    BatchPolicy,
    Collate,
    DynamicBatcher,
    Length,
    concatenate,
)
from onyx.serve.dtypes import DTYPES
from onyx.serve.errors import ConfigError, ModelNotFound, ModelNotReady
from onyx.serve.metrics import ServerMetrics
from onyx.serve.model_config import CONFIG_FILE, load_config
from onyx.serve.runtime import CUDA, RuntimeOptions, Session
from onyx.serve.text import TextEncoder, load_encoder, pad_rows

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
# Sequence length used to warm up models with a dynamic time axis.
WARMUP_SEQUENCE_LENGTH = 16

ModelControl = Literal["none", "poll", "explicit"]
MODEL_CONTROLS: tuple[ModelControl, ...] = ("none", "poll", "explicit")
# Makes the batch observer (metrics) for one model version: (model name, version) -> observer.
ObserverFactory = Callable[[str, int], BatchObserver | None]


@dataclass(frozen=True)
class RepositoryOptions:
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    # Server-wide cap on queued inputs per model version when its config sets none.
    default_max_queue_size: int = 1024
    # ONNX Runtime sessions per version for every model (0: each config's `instances`).
    instances: int = 0
    # none: load at start only; poll: also follow the disk; explicit: load/unload on request.
    model_control: ModelControl = "none"
    # With explicit control, the models loaded at start ("*": all of them).
    startup_models: tuple[str, ...] = ()
    # Where load metrics go (None: not recorded); batch metrics come through `observers`.
    metrics: ServerMetrics | None = None


@dataclass
class ModelVersion:
    """One version of one model: its sessions, its batcher, and its state."""

    version: int
    path: Path
    state: int = api.VERSION_STATE_LOADING
    reason: str = ""
    providers: list[str] = field(default_factory=list)
    # Why these providers (e.g. "no NVIDIA driver (libcuda.so.1) on this machine").
    provider_reason: str = ""
    # Seconds loading and warming up took.
    load_seconds: float = 0.0
    batcher: DynamicBatcher | None = None
    executor: ThreadPoolExecutor | None = None
    # Text models: this version's tokenizer + vocabulary (each training builds its own).
    text_encoder: TextEncoder | None = None
    # The model file as it was when loaded; a different stamp on disk means "load it again".
    stamp: tuple[int, int, int] | None = None
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

    async def infer(self, inputs: np.ndarray, deadline: float | None = None) -> np.ndarray:
        # A leased version may be unloading: it still finishes the requests that hold it.
        if self.batcher is None or self.state not in _SERVING_STATES:
            raise ModelNotReady(f"version {self.version} is not ready")
        return await self.batcher.submit(inputs, deadline)

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


@dataclass
class Model:
    name: str
    directory: Path
    config: pb.ModelConfig | None = None
    reason: str = ""
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    # Hash of config.pbtxt as loaded; a different one on disk means the config was edited.
    config_stamp: str = ""

    @property
    def ready(self) -> bool:
        return any(v.ready for v in self.versions.values())

    def version(self, number: int = 0) -> ModelVersion:
        """The requested version, or the newest ready one when `number` is 0."""
        if self.config is None:
            raise ModelNotReady(f"model {self.name!r} is not ready: {self.reason}")
        if number:
            found = self.versions.get(number)
            if found is None:
                raise ModelNotFound(
                    f"model {self.name!r} has no version {number} (loaded: {sorted(self.versions)})"
                )
            if not found.ready:
                raise ModelNotReady(
                    f"model {self.name!r} version {number} is not ready: {found.reason}"
                )
            return found
        ready = [v for v in self.versions.values() if v.ready]
        if not ready:
            raise ModelNotReady(f"model {self.name!r} has no ready version: {self._reasons()}")
        return max(ready, key=lambda v: v.version)

    def _reasons(self) -> str:
        reasons = [f"v{v.version}: {v.reason}" for v in self.versions.values() if v.reason]
        return "; ".join(reasons) or self.reason or "none found"

    async def unload(self) -> None:
        versions, self.versions = list(self.versions.values()), {}
        await asyncio.gather(*(v.unload() for v in versions))


def version_numbers(model_dir: Path) -> list[int]:
    """Version folders of a model (positive integer names), ascending."""
    if not model_dir.is_dir():
        return []
    numbers = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(n for n in numbers if n > 0)


def select_versions(available: Sequence[int], policy: pb.VersionPolicy) -> list[int]:
    """Apply the config's version policy (default: the latest one)."""
    kind = policy.WhichOneof("policy")
    if kind == "all":
        return list(available)
    if kind == "specific":
        wanted = set(policy.specific.versions)
        return [v for v in available if v in wanted]
    count = policy.latest.num_versions if kind == "latest" else 1
    return list(available)[-max(1, count) :]


def config_stamp(model_dir: Path) -> str:
    try:
        return hashlib.sha256((model_dir / CONFIG_FILE).read_bytes()).hexdigest()
    except OSError:
        return ""


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class Repository:
    def __init__(
        self,
        root: Path,
        options: RepositoryOptions = RepositoryOptions(),
        observers: ObserverFactory | None = None,
    ) -> None:
        self.root = root
        self.options = options
        self._observers = observers
        self._models: dict[str, Model] = {}
        # One change at a time: polls and explicit load/unload never interleave.
        self._lock = asyncio.Lock()
        # Called after every change (the server republishes health from it).
        self.on_change: Callable[[], Awaitable[None]] | None = None

    def get(self, name: str) -> Model:
        model = self._models.get(name)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFound(f"model {name!r} not found (models: {known})")
        return model

    def models(self) -> list[Model]:
        return [self._models[name] for name in sorted(self._models)]

    def on_disk(self) -> list[str]:
        """Names of the model folders under the root."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    async def load_all(self) -> None:
        """Load the models at start; failures are recorded, never raised."""
        if not self.root.is_dir():
            log.warning("model repository %s does not exist; serving no models", self.root)
            return
        names = self.on_disk()
        if self.options.model_control == "explicit" and "*" not in self.options.startup_models:
            names = [n for n in names if n in self.options.startup_models]
        for name in names:
            await self.sync(name)

    async def poll(self) -> None:
        """Bring every model in line with the disk: new, edited and removed models and versions."""
        for name in sorted({*self.on_disk(), *self._models}):
            await self.sync(name)

    async def sync(self, name: str) -> None:
        """Load, reload or unload model `name` so it matches its folder."""
        async with self._lock:
            await self._sync(name)
        await self._changed()

    async def unload(self, name: str) -> None:
        """Drain and unload every version of `name`; it stays listed, as unloaded."""
        async with self._lock:
            model = self.get(name)
            await model.unload()
            model.reason = "unloaded"
            model.config_stamp = ""
        log.info("model %s unloaded", name)
        await self._changed()

    async def close(self) -> None:
        for model in self._models.values():
            await model.unload()

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()

    async def _sync(self, name: str) -> None:
        directory = self.root / name
        current = self._models.get(name)
        if not directory.is_dir():
            if current is not None:
                log.info("model %s removed from the repository; unloading it", name)
                del self._models[name]
                await current.unload()
            return
        if current is None or current.config_stamp != config_stamp(directory):
            await self._replace_model(name, current)
        elif current.config is not None:
            await self._sync_versions(current)

    async def _replace_model(self, name: str, current: Model | None) -> None:
        fresh = await self.load_model(self.root / name)
        if current is None or fresh.ready or not current.ready:
            self._models[name] = fresh
            if current is not None:
                await current.unload()
            return
        for version in fresh.versions.values():
            await version.unload()
        current.config_stamp = fresh.config_stamp  # do not retry until it changes again
        current.reason = f"reload failed, previous config still serving: {fresh._reasons()}"
        log.error("model %s: %s", name, current.reason)

    async def load_model(self, model_dir: Path) -> Model:
        model = Model(model_dir.name, model_dir, config_stamp=config_stamp(model_dir))
        try:
            model.config = load_config(model_dir / CONFIG_FILE)
        except ConfigError as exc:
            model.reason = str(exc)
            log.error("model %s not loaded: %s", model.name, exc)
            return model
        await self._sync_versions(model)
        if not model.versions:
            model.reason = f"no version folders with {MODEL_FILE} under {model_dir}"
            log.error("model %s: %s", model.name, model.reason)
        return model

    async def _sync_versions(self, model: Model) -> None:
        assert model.config is not None
        available = version_numbers(model.directory)
        wanted = select_versions(available, model.config.version_policy)
        for number in wanted:
            await self._sync_version(model, number)
        if any(model.versions[n].ready for n in wanted if n in model.versions):
            model.reason = ""
            stale = [n for n in model.versions if n not in wanted]
        else:  # nothing new serves: keep the old versions unless their folders are gone
            stale = [n for n in model.versions if n not in available]
        for number in stale:
            log.info("model %s version %d retired; draining it", model.name, number)
            await model.versions.pop(number).unload()

    async def _sync_version(self, model: Model, number: int) -> None:
        old = model.versions.get(number)
        path = model.directory / str(number) / MODEL_FILE
        if old is not None and old.stamp == file_stamp(path):
            return
        new = await self.load_version(model, number)
        if new.ready or old is None or not old.ready:
            model.versions[number] = new  # the switch: requests from now on get `new`
            if old is not None:
                await old.unload()
        else:
            old.stamp = new.stamp
            old.reason = f"reload failed, previous file still serving: {new.reason}"

    async def load_version(self, model: Model, number: int) -> ModelVersion:
        assert model.config is not None
        path = model.directory / str(number) / MODEL_FILE
        version = ModelVersion(number, path, stamp=file_stamp(path))
        metrics = self.options.metrics
        if metrics is not None:
            metrics.model_seen(model.name)
        started = time.monotonic()
        try:
            if model.config.task == pb.TASK_TEXT:
                version.text_encoder = load_encoder(model.config.text, version.path.parent)
            await self._start_version(version, model)
        except Exception as exc:
            version.state, version.reason = api.VERSION_STATE_FAILED, str(exc)
            log.error("model %s version %d failed to load: %s", model.name, number, exc)
            if metrics is not None:
                metrics.load_failures.labels(model.name).inc()
            return version
        version.load_seconds = time.monotonic() - started
        log.info(
            "model %s version %d ready on %s (%s) in %.2fs",
            model.name,
            number,
            version.providers[0],
            version.provider_reason,
            version.load_seconds,
        )
        return version

    async def _start_version(self, version: ModelVersion, model: Model) -> None:
        config = model.config
        assert config is not None
        if not version.path.is_file():
            raise ConfigError(f"{version.path} does not exist")
        instances = self.options.instances or max(1, config.instances)
        executor = ThreadPoolExecutor(max_workers=instances, thread_name_prefix=f"ort-{model.name}")
        try:
            sessions = await _open_sessions(version.path, config, self.options, instances, executor)
            policy = BatchPolicy(
                max_batch_size=config.batching.max_batch_size,
                max_queue_delay_us=config.batching.max_queue_delay_us,
                max_queue_size=config.batching.max_queue_size
                or self.options.default_max_queue_size,
                max_concurrent_batches=instances,
            )
            await _warm_up(sessions, config, policy.max_batch_size, executor)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        observer = self._observers(model.name, version.version) if self._observers else None
        version.executor = executor
        version.providers = sessions[0].providers
        version.provider_reason = sessions[0].provider_reason
        version.batcher = DynamicBatcher(
            session_pool(sessions, executor),
            policy,
            collate_for(config),
            observer,
            length_for(config),
        )
        version.batcher.start()
        version.state = api.VERSION_STATE_READY


async def _open_sessions(
    path: Path,
    config: pb.ModelConfig,
    options: RepositoryOptions,
    instances: int,
    executor: ThreadPoolExecutor,
) -> list[Session]:
    loop = asyncio.get_running_loop()
    opened = [
        loop.run_in_executor(executor, Session, path, config, options.runtime, instances)
        for _ in range(instances)
    ]
    return list(await asyncio.gather(*opened))


def session_pool(
    sessions: Sequence[Session], executor: ThreadPoolExecutor
) -> Callable[[np.ndarray], Awaitable[np.ndarray]]:
    """A batcher `run` function: each batch runs on a free session, in the version's threads.

    The work is submitted before `run` returns (no coroutine to schedule first), so the batcher
    can start the next batch ahead of answering the last one. The batcher runs at most one
    batch per session at once, so a session is always free when it calls.
    """
    free = list(sessions)

    def run(batch: np.ndarray) -> asyncio.Future[np.ndarray]:
        if not free:
            raise RuntimeError(f"more batches in flight than the {len(sessions)} sessions")
        session = free.pop()
        future = asyncio.get_running_loop().run_in_executor(executor, session.run, batch)
        future.add_done_callback(lambda _: free.append(session))
        return future

    return run


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
