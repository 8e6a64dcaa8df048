"""The model repository: which versions of which models are loaded, kept in line with the disk.

Files and their layout are in `layout`; one version's load, hot path and unload in `version`.
Every model found at start is loaded (with `model_control="explicit"`, only the ones named); a
model or version that fails to load is recorded with its reason (reported by `GetModel`, health
and `RepositoryIndex`) while the others serve. Each version is served with its own description
(`<model>/<version>/model.pbtxt`), so loading one version never touches another.

`sync(name)` brings one model in line with the disk, and `poll()` does it for all of them:

* a new version folder is loaded and warmed up, then switched in (one dict assignment: the
  newest ready version serves from the next request on); the versions already loaded are left
  alone;
* a version the policy no longer wants is dropped once a wanted one is ready (so a new version
  that fails to load leaves the old one serving), and a version whose folder is gone at once;
* an edit of config.pbtxt that changes only the version policy (or name) is applied in place:
  versions newly wanted load, versions no longer wanted retire, the others are not reloaded;
* any other edit of config.pbtxt loads the whole model afresh beside the old one, which keeps
  serving unless the new one has every version ready that the old one served and the new policy
  still wants (so a version failing under the new config never silently drops out);
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
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from onyx.contract.errors import ConfigError, ModelNotFound, ModelNotReady, quoted
from onyx.contract.layout import (
    CONFIG_FILE,
    MODEL_FILE,
    ignored_folders,
    read_model_config,
    version_dir,
    version_numbers,
)
from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.config import ModelControl as ModelControl
from onyx.serve.execution.runtime import RuntimeOptions
from onyx.serve.observers import NO_OBSERVERS, Observers
from onyx.serve.version import ModelVersion, VersionLoader, folder_stamp

log = logging.getLogger(__name__)

MODEL_CONTROLS: tuple[ModelControl, ...] = ("none", "poll", "explicit")
# The reason of a model unloaded on request (explicit control).
UNLOADED = "unloaded"


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


@dataclass
class Model:
    name: str
    directory: Path
    # The model-level config.pbtxt: serving policy (and, in older repositories, the defaults of
    # the per-version facts). Each version is served with its own `ModelVersion.config`.
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
        return self._default_version(ready)

    def _default_version(self, ready: list[ModelVersion]) -> ModelVersion:
        """Of `ready`, the version answering requests that name none: the newest exact one, or
        its variant of the precision `default_precision` prefers on its device; a variant
        otherwise only when no exact version is ready (docs/variants.md)."""
        exact = [v for v in ready if not is_variant(v)]
        if not exact:
            return max(ready, key=lambda v: v.version)
        newest = max(exact, key=lambda v: v.version)
        wanted = self._preferred_precision(newest)
        if wanted == pb.PRECISION_UNSPECIFIED:
            return newest
        variants = [v for v in ready if precision_of(v) == wanted and base_of(v) == newest.version]
        return max(variants, key=lambda v: v.version, default=newest)

    def _preferred_precision(self, version: ModelVersion) -> int:
        if self.config is None:
            return pb.PRECISION_UNSPECIFIED
        policy = self.config.default_precision
        on_cuda = bool(version.providers) and version.providers[0] == "CUDAExecutionProvider"
        return int(policy.cuda if on_cuda else policy.cpu)

    def describe(self) -> pb.ModelConfig | None:
        """The config to show for the model: that of the version serving requests that name
        none (the newest ready one that is not a variant), else config.pbtxt."""
        ready = [v for v in self.versions.values() if v.ready and v.config is not None]
        if ready:
            return self._default_version(ready).config
        return self.config

    def _reasons(self) -> str:
        reasons = [f"v{v.version}: {v.reason}" for v in self.versions.values() if v.reason]
        return "; ".join(reasons) or self.reason or "none found"

    async def unload(self) -> None:
        versions, self.versions = list(self.versions.values()), {}
        await asyncio.gather(*(v.unload() for v in versions))


def is_variant(version: ModelVersion) -> bool:
    """Whether `version` is a faster variant (int8, fp16) of an fp32 version."""
    return version.config is not None and version.config.HasField("variant")


def base_of(version: ModelVersion) -> int:
    """The fp32 version a variant was made from (0: not a variant)."""
    return int(version.config.variant.base_version) if version.config is not None else 0


def precision_of(version: ModelVersion) -> int:
    """The version's precision: PRECISION_UNSPECIFIED (exact fp32) unless it is a variant."""
    if version.config is None or not version.config.HasField("variant"):
        return pb.PRECISION_UNSPECIFIED
    return int(version.config.variant.precision)


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


def _lost_versions(current: Model | None, fresh: Model) -> list[int]:
    """Versions ready in `current` that the fresh config still wants but could not make ready:
    swapping would drop them (and `version 0` could fall back to an older one)."""
    if current is None or fresh.config is None:
        return []
    wanted = select_versions(version_numbers(fresh.directory), fresh.config.version_policy)
    return sorted(
        n for n, v in current.versions.items()
        if v.ready and n in wanted and not (n in fresh.versions and fresh.versions[n].ready)
    )  # fmt: skip


def _without_policy(config: pb.ModelConfig) -> pb.ModelConfig:
    """`config` less what a version need not be reloaded for: its name and version policy."""
    rest = pb.ModelConfig()
    rest.CopyFrom(config)
    rest.ClearField("name")
    rest.ClearField("version_policy")
    return rest


def config_stamp(model_dir: Path) -> str:
    try:
        return hashlib.sha256((model_dir / CONFIG_FILE).read_bytes()).hexdigest()
    except OSError:
        return ""


class Repository:
    def __init__(
        self,
        root: Path,
        options: RepositoryOptions = RepositoryOptions(),
        observers: Observers = NO_OBSERVERS,
    ) -> None:
        self.root = root
        self.options = options
        # Told about every load (metrics), and makes each version's batch observer.
        self._loads = observers.loads
        self._loader = VersionLoader(
            options.runtime, options.default_max_queue_size, options.instances, observers
        )
        self._models: dict[str, Model] = {}
        # One change at a time: polls and explicit load/unload never interleave.
        self._lock = asyncio.Lock()
        # Called after every change (the server republishes health from it).
        self.on_change: Callable[[], Awaitable[None]] | None = None

    def get(self, name: str) -> Model:
        model = self._models.get(name)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFound(f"model {quoted(name)} not found (models: {known})")
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
        """Bring every model in line with the disk: new, edited and removed models and versions.

        Listeners hear once per poll, and only when something changed (health is published for
        every model at once: once per model would be quadratic in the models, every poll)."""
        before, _held = self._fingerprint(), self._objects()
        for name in sorted({*self.on_disk(), *self._models}):
            async with self._lock:
                await self._sync(name)
        if self._fingerprint() != before:
            await self._changed()

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
            model.reason = UNLOADED
            model.config_stamp = ""
        log.info("model %s unloaded", name)
        await self._changed()

    async def close(self) -> None:
        for model in self._models.values():
            await model.unload()

    def _fingerprint(self) -> tuple[object, ...]:
        """What listeners see of the models: which objects serve, in which states, and why."""
        return tuple(
            (name, id(model), model.reason,
             tuple((n, id(v), v.state, v.reason) for n, v in sorted(model.versions.items())))
            for name, model in sorted(self._models.items())
        )  # fmt: skip

    def _objects(self) -> list[object]:
        """The models and versions a fingerprint names: holding them keeps their ids unique."""
        return [
            *self._models.values(),
            *(v for m in self._models.values() for v in m.versions.values()),
        ]

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
            if current is None or not await self._apply_policy_edit(current):
                await self._replace_model(name, current)
        elif current.config is not None:
            await self._sync_versions(current)

    async def _apply_policy_edit(self, model: Model) -> bool:
        """Apply an edit of config.pbtxt that changes only which versions serve (version_policy,
        name) in place: the versions kept are not reloaded. False for any other edit."""
        stamp = config_stamp(model.directory)
        try:
            edited = read_model_config(model.directory)
        except ConfigError:
            return False  # the full reload records why
        if model.config is None or _without_policy(edited) != _without_policy(model.config):
            return False
        log.info("model %s: version policy edited; applying it without reloading", model.name)
        model.config, model.config_stamp = edited, stamp
        for version in model.versions.values():  # what GetModel shows of each
            if version.config is not None:
                version.config.name = edited.name
                version.config.version_policy.CopyFrom(edited.version_policy)
        await self._sync_versions(model)
        return True

    async def _replace_model(self, name: str, current: Model | None) -> None:
        fresh = await self.load_model(self.root / name)
        lost = _lost_versions(current, fresh)
        if current is None or (fresh.ready and not lost) or not current.ready:
            self._models[name] = fresh
            if current is not None:
                await current.unload()
            return
        why = f"v{', v'.join(map(str, lost))} would stop serving; " if fresh.ready else ""
        current.reason = f"reload failed, previous config still serving: {why}{fresh._reasons()}"
        current.config_stamp = fresh.config_stamp  # do not retry until it changes again
        log.error("model %s: %s", name, current.reason)
        for version in fresh.versions.values():
            await version.unload()

    async def load_model(self, model_dir: Path) -> Model:
        model = Model(model_dir.name, model_dir, config_stamp=config_stamp(model_dir))
        try:
            model.config = read_model_config(model_dir)
        except ConfigError as exc:
            model.reason = str(exc)
            log.error("model %s not loaded: %s", model.name, exc)
            # Counted like a failed version load: it shows on dashboards.
            self._loads.load_started(model.name, 0)
            self._loads.load_failed(model.name, 0, model.reason)
            return model
        await self._sync_versions(model)
        if not model.versions:
            model.reason = f"no version folders with {MODEL_FILE} under {model_dir}"
            log.error("model %s: %s", model.name, model.reason)
        return model

    async def _sync_versions(self, model: Model) -> None:
        assert model.config is not None
        for name in ignored_folders(model.directory):  # at start and on every poll
            log.warning(
                "model %s: folder %r is not a version (versions are named by ASCII digits, "
                "e.g. 3); ignored", model.name, name[:100],
            )  # fmt: skip
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
        folder = version_dir(model.directory, number)
        if old is not None and old.stamp == folder_stamp(folder):
            return  # unchanged: a published version is never reloaded
        assert model.config is not None
        new = await self._loader.load(model.name, model.config, folder)
        if new.ready or old is None or not old.ready:
            model.versions[number] = new  # the switch: requests from now on get `new`
            if old is not None:
                await old.unload()
        else:
            old.stamp = new.stamp
            old.reason = f"reload failed, previous files still serving: {new.reason}"
