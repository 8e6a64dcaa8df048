"""The model repository: `<root>/<name>/config.pbtxt` and `<root>/<name>/<version>/model.onnx`.

Every model found at start is loaded; a model or version that fails to load is recorded with its
reason (and reported by `GetModel`/health) while the others serve. Each loaded version owns its
ONNX Runtime sessions and its dynamic batcher.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.batching import BatchPolicy, Collate, DynamicBatcher, RunBatch, concatenate
from onyx.serve.errors import ConfigError, ModelNotFound, ModelNotReady
from onyx.serve.model_config import CONFIG_FILE, load_config
from onyx.serve.runtime import NUMPY_DTYPES, RuntimeOptions, Session
from onyx.serve.text import TextEncoder, load_encoder

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
# Sequence length used to warm up models with a dynamic time axis.
WARMUP_SEQUENCE_LENGTH = 16


@dataclass(frozen=True)
class RepositoryOptions:
    runtime: RuntimeOptions = RuntimeOptions()
    # Server-wide cap on queued inputs per model version when its config sets none.
    default_max_queue_size: int = 1024


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
    batcher: DynamicBatcher | None = None
    executor: ThreadPoolExecutor | None = None
    # Text models: this version's tokenizer + vocabulary (each training builds its own).
    text_encoder: TextEncoder | None = None

    @property
    def ready(self) -> bool:
        return self.state == api.VERSION_STATE_READY

    async def infer(self, inputs: np.ndarray, deadline: float | None = None) -> np.ndarray:
        if self.batcher is None or not self.ready:
            raise ModelNotReady(f"version {self.version} is not ready")
        return await self.batcher.submit(inputs, deadline)

    async def unload(self) -> None:
        self.state = api.VERSION_STATE_UNLOADING
        if self.batcher is not None:
            await self.batcher.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False)


@dataclass
class Model:
    name: str
    directory: Path
    config: pb.ModelConfig | None = None
    reason: str = ""
    versions: dict[int, ModelVersion] = field(default_factory=dict)

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
                    f"model {self.name!r} has no version {number} "
                    f"(loaded: {sorted(self.versions)})"
                )
            if not found.ready:
                raise ModelNotReady(f"model {self.name!r} version {number} is not ready: {found.reason}")
            return found
        ready = [v for v in self.versions.values() if v.ready]
        if not ready:
            raise ModelNotReady(f"model {self.name!r} has no ready version: {self._reasons()}")
        return max(ready, key=lambda v: v.version)

    def _reasons(self) -> str:
        return "; ".join(f"v{v.version}: {v.reason}" for v in self.versions.values()) or "none found"


def version_numbers(model_dir: Path) -> list[int]:
    """Version folders of a model (positive integer names), ascending."""
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


class Repository:
    def __init__(self, root: Path, options: RepositoryOptions = RepositoryOptions()) -> None:
        self.root = root
        self.options = options
        self._models: dict[str, Model] = {}

    def get(self, name: str) -> Model:
        model = self._models.get(name)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFound(f"model {name!r} not found (models: {known})")
        return model

    def models(self) -> list[Model]:
        return [self._models[name] for name in sorted(self._models)]

    async def load_all(self) -> None:
        """Load every model under the root; failures are recorded, never raised."""
        if not self.root.is_dir():
            log.warning("model repository %s does not exist; serving no models", self.root)
            return
        for model_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if not model_dir.name.startswith("."):
                self._models[model_dir.name] = await self.load_model(model_dir)

    async def load_model(self, model_dir: Path) -> Model:
        model = Model(model_dir.name, model_dir)
        try:
            model.config = load_config(model_dir / CONFIG_FILE)
        except ConfigError as exc:
            model.reason = str(exc)
            log.error("model %s not loaded: %s", model.name, exc)
            return model
        for number in select_versions(version_numbers(model_dir), model.config.version_policy):
            model.versions[number] = await self.load_version(model, number)
        if not model.versions:
            model.reason = f"no version folders with {MODEL_FILE} under {model_dir}"
            log.error("model %s: %s", model.name, model.reason)
        return model

    async def load_version(self, model: Model, number: int) -> ModelVersion:
        assert model.config is not None
        version = ModelVersion(number, model.directory / str(number) / MODEL_FILE)
        started = time.monotonic()
        try:
            if model.config.task == pb.TASK_TEXT:
                version.text_encoder = load_encoder(model.config.text, version.path.parent)
            await _start_version(version, model.config, self.options, collate_for(model.config))
        except Exception as exc:
            version.state, version.reason = api.VERSION_STATE_FAILED, str(exc)
            log.error("model %s version %d failed to load: %s", model.name, number, exc)
            return version
        log.info(
            "model %s version %d ready on %s (%s) in %.2fs",
            model.name, number, version.providers[0], version.provider_reason, time.monotonic() - started,
        )
        return version

    async def close(self) -> None:
        for model in self._models.values():
            for version in model.versions.values():
                await version.unload()


def collate_for(config: pb.ModelConfig) -> Collate:
    """How queued inputs join into one batch: concatenated, or right-padded for text."""
    if config.task != pb.TASK_TEXT:
        return concatenate
    pad_id = config.text.pad_id

    def pad_to_longest(arrays: Sequence[np.ndarray]) -> np.ndarray:
        longest = max(a.shape[1] for a in arrays)
        batch = np.full((sum(a.shape[0] for a in arrays), longest), pad_id, dtype=arrays[0].dtype)
        row = 0
        for array in arrays:
            batch[row : row + array.shape[0], : array.shape[1]] = array
            row += array.shape[0]
        return batch

    return pad_to_longest


async def _start_version(
    version: ModelVersion, config: pb.ModelConfig, options: RepositoryOptions, collate: Collate
) -> None:
    loop = asyncio.get_running_loop()
    instances = max(1, config.instances)
    executor = ThreadPoolExecutor(max_workers=instances, thread_name_prefix=f"ort-{config.name}")
    sessions = [
        await loop.run_in_executor(
            executor, Session, version.path, config, options.runtime, instances
        )
        for _ in range(instances)
    ]
    free: asyncio.Queue[Session] = asyncio.Queue()
    for session in sessions:
        free.put_nowait(session)

    async def run(batch: np.ndarray) -> np.ndarray:
        session = await free.get()
        try:
            return await loop.run_in_executor(executor, session.run, batch)
        finally:
            free.put_nowait(session)

    policy = BatchPolicy(
        max_batch_size=config.batching.max_batch_size,
        max_queue_delay_us=config.batching.max_queue_delay_us,
        max_queue_size=config.batching.max_queue_size or options.default_max_queue_size,
        max_concurrent_batches=instances,
    )
    await _warm_up(run, config, policy.max_batch_size)
    version.executor = executor
    version.providers = sessions[0].providers
    version.provider_reason = sessions[0].provider_reason
    version.batcher = DynamicBatcher(run, policy, collate)
    version.batcher.start()
    version.state = api.VERSION_STATE_READY


async def _warm_up(run: RunBatch, config: pb.ModelConfig, max_batch_size: int) -> None:
    """Run the batch sizes the batcher will form first, so no user pays for the first run."""
    dtype = NUMPY_DTYPES[config.input.dtype]
    for size in sorted({1, max_batch_size}):
        shape = [size, *(WARMUP_SEQUENCE_LENGTH if d == -1 else d for d in config.input.dims[1:])]
        await run(np.zeros(shape, dtype=dtype))
