"""The search space: which config fields a study varies, over which ranges or choices.

    space = default_space(config, fixed=given_fields(ctx))     # the task's defaults
    space = merge(space, load_space(Path("space.toml"), type(config)))
    config = trial_config(trial, config, space)                # one trial's config

A parameter is a field of the training config (`lr`, `augment.rotation_degrees`) or, for image
tasks, the virtual `augment_strength`, which scales every augmentation of the base config at
once (0: none, 1: the base config's, 2: twice as strong). Its kind follows from the field's
type: `int` -> an integer range, `float` -> a float range, `bool` and `Literal[...]` -> choices
(all of them unless narrowed); `str`/`Path` fields take choices only. Ranges are checked against
the field's own bounds (its `min`/`max` metadata), so a space can never build an invalid config.

The space file is TOML, one key or table per parameter; what an entry leaves out comes from
the default entry of that name, else from the field (its choices, its closed bounds):

    [lr]
    low = 1e-4
    high = 1e-2
    log = true              # sample on a log scale
    [hidden]
    low = 32
    high = 256
    step = 32
    [cell]                  # a Literal field: choices narrow it; an empty table keeps all
    choices = ["gru"]
    [augment.rotation_degrees]
    low = 0.0
    high = 30.0
    bidirectional = true    # search with the default range / all choices / the field's bounds
    weight_decay = false    # do not search: keep the fixed value
    defaults = false        # (top level) start from an empty space, not the task's defaults
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from onyx.settings.options import FieldSpec, field_specs
from onyx.train.config import AugmentConfig, ImageTrainConfig, TextTrainConfig, TrainConfig

AUGMENT_STRENGTH = "augment_strength"
_PARAM_KEYS = frozenset({"low", "high", "log", "step", "choices"})
# Fields a study must not vary: the data, where trials write, resuming.
_NOT_SEARCHABLE = frozenset({"data", "out_dir", "resume"})


class SpaceError(ValueError):
    """A search space that names an unknown field or gives a range the field cannot take."""


class Suggester(Protocol):
    """What `Param.suggest` needs of an `optuna.Trial` (kept structural: no optuna import)."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = ..., log: bool = ...
    ) -> float: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = ..., log: bool = ...
    ) -> int: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class Param:
    """One searched parameter: `choices`, or a `low`..`high` range (integer or float)."""

    name: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Suggester) -> Any:
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.integer:
            step = int(self.step or 1)
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step,
                                     log=self.log)  # fmt: skip
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.choices:
            return f"{self.name} in {list(self.choices)}"
        scale = ", log" if self.log else ""
        step = f", step {self.step:g}" if self.step else ""
        return f"{self.name} in [{self.low:g}, {self.high:g}{step}{scale}]"


Space = dict[str, Param]

# The defaults per task, as TOML-like entries (see the module docstring): what the seeds call
# the knobs that matter for fine-tuning (image) and for an RNN from scratch (text).
IMAGE_DEFAULTS: dict[str, Mapping[str, Any]] = {
    "lr": {"low": 1e-4, "high": 3e-2, "log": True},
    "batch_size": {"choices": [16, 32, 64]},
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    AUGMENT_STRENGTH: {"low": 0.0, "high": 2.0},
}
# Only with pretrained weights: without them the transfer schedule does nothing.
TRANSFER_DEFAULTS: dict[str, Mapping[str, Any]] = {
    "backbone_lr_scale": {"low": 0.01, "high": 1.0, "log": True},
    "freeze_epochs": {"low": 0, "high": 2},
    "unfreeze": {"choices": [-1, 0, 1, 2]},  # all, none, the last 1 or 2 stages
}
TEXT_DEFAULTS: dict[str, Mapping[str, Any]] = {
    "lr": {"low": 1e-4, "high": 3e-2, "log": True},
    "hidden": {"low": 16, "high": 256, "log": True},
    "layers": {"low": 1, "high": 3},
    "cell": {},
    "bidirectional": {},
    "dropout": {"low": 0.0, "high": 0.5},
    "embed_dim": {"low": 16, "high": 256, "log": True},
}


def default_space(config: TrainConfig, fixed: Sequence[str] = ()) -> Space:
    """The task's default space, less the fields set explicitly (`fixed`, dotted names):
    those stay fixed in every trial, as `onyx train` would use them."""
    entries = _default_entries(config)
    given = set(fixed)
    if any(name.startswith("augment.") for name in given):
        given.add(AUGMENT_STRENGTH)  # the user's augmentation is fixed: do not scale it
    kept = {name: entry for name, entry in entries.items() if name not in given}
    return build_space(kept, type(config))


def _default_entries(config: TrainConfig) -> dict[str, Mapping[str, Any]]:
    if isinstance(config, TextTrainConfig):
        entries = dict(TEXT_DEFAULTS)
        if config.vectors:  # the loaded vectors fix the embedding width
            entries.pop("embed_dim")
        return entries
    if not isinstance(config, ImageTrainConfig):
        raise SpaceError(f"no default space for {type(config).__name__}")
    entries = dict(IMAGE_DEFAULTS)
    if config.weights != "none":
        entries.update(TRANSFER_DEFAULTS)
        # A frozen backbone for every epoch would be `unfreeze 0`: keep one epoch to unfreeze.
        top = min(2, config.epochs - 1)
        if top >= 1:
            entries["freeze_epochs"] = {"low": 0, "high": top}
        else:
            entries.pop("freeze_epochs")
    return entries


def load_space(path: Path, cls: type[TrainConfig]) -> tuple[Space, list[str], bool]:
    """(parameters, names switched off, whether to keep the defaults) from a space file."""
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpaceError(f"{path}: {exc}") from exc
    keep_defaults = data.pop("defaults", True)
    if not isinstance(keep_defaults, bool):
        raise SpaceError(f"{path}: 'defaults' must be true or false")
    entries, off = _flatten(data, (), path)
    try:
        return build_space(entries, cls), off, keep_defaults
    except SpaceError as exc:
        raise SpaceError(f"{path}: {exc}") from exc


def merge(defaults: Space, file: tuple[Space, list[str], bool]) -> Space:
    """The defaults (unless the file says `defaults = false`), less the names the file switches
    off, then the file's parameters (which win over a default of the same name)."""
    params, off, keep_defaults = file
    space = dict(defaults) if keep_defaults else {}
    for name in off:
        space.pop(name, None)
    space.update(params)
    return space


def _flatten(
    table: Mapping[str, Any], path: tuple[str, ...], file: Path
) -> tuple[dict[str, Mapping[str, Any]], list[str]]:
    """TOML tables to dotted names: a table with range/choice keys (or an empty one) is a
    parameter, any other table a section of nested fields (`[augment]`)."""
    entries: dict[str, Mapping[str, Any]] = {}
    off: list[str] = []
    for key, value in table.items():
        name = ".".join((*path, key))
        if value is True:
            entries[name] = {}
        elif value is False:
            off.append(name)
        elif isinstance(value, dict) and (not value or set(value) & _PARAM_KEYS):
            unknown = set(value) - _PARAM_KEYS
            if unknown:
                raise SpaceError(f"{file}: [{name}] has unknown keys {sorted(unknown)}; "
                                 f"use {', '.join(sorted(_PARAM_KEYS))}")  # fmt: skip
            entries[name] = value
        elif isinstance(value, dict):
            more, more_off = _flatten(value, (*path, key), file)
            entries.update(more)
            off += more_off
        else:
            raise SpaceError(f"{file}: {name!r} must be a [table], true or false")
    return entries, off


def build_space(entries: Mapping[str, Mapping[str, Any]], cls: type[TrainConfig]) -> Space:
    """Parameters from entries, each checked against its field's type and bounds."""
    specs = searchable_fields(cls)
    defaults = _class_defaults(cls)
    return {
        name: _param(name, {**defaults.get(name, {}), **entry}, specs)
        for name, entry in entries.items()
    }


def _class_defaults(cls: type[TrainConfig]) -> dict[str, Mapping[str, Any]]:
    """Every default entry of the task: what a file's entry does not say comes from there."""
    if issubclass(cls, TextTrainConfig):
        return TEXT_DEFAULTS
    return {**IMAGE_DEFAULTS, **TRANSFER_DEFAULTS}


def searchable_fields(cls: type[TrainConfig]) -> dict[str, FieldSpec]:
    specs = {s.key: s for s in field_specs(cls) if s.key not in _NOT_SEARCHABLE}
    if issubclass(cls, ImageTrainConfig):
        bounds = {"min": 0.0}
        specs[AUGMENT_STRENGTH] = FieldSpec(
            (AUGMENT_STRENGTH,), AUGMENT_STRENGTH, float, 1.0, bounds, ""
        )
    return specs


def _param(name: str, entry: Mapping[str, Any], specs: Mapping[str, FieldSpec]) -> Param:
    spec = specs.get(name)
    if spec is None:
        raise SpaceError(f"unknown parameter {name!r}; choose from {', '.join(sorted(specs))}")
    kind = spec.type
    all_choices = _type_choices(kind)
    if "choices" in entry or all_choices is not None:
        choices = tuple(entry.get("choices", all_choices or ()))
        return _choice_param(name, choices, kind, all_choices, spec)
    if kind not in (int, float):
        raise SpaceError(f"{name} ({_type_name(kind)}) takes choices = [...], not a range")
    meta = spec.metadata
    closed = {"low": None if meta.get("min_open") else meta.get("min"),
              "high": None if meta.get("max_open") else meta.get("max")}  # fmt: skip
    entry = {**{k: v for k, v in closed.items() if v is not None}, **entry}
    if "low" not in entry or "high" not in entry:
        raise SpaceError(f"{name}: give low and high, or choices")
    param = Param(name, float(entry["low"]), float(entry["high"]), bool(entry.get("log", False)),
                  entry.get("step"), integer=kind is int)  # fmt: skip
    _check_range(param, spec)
    return param


def _type_choices(kind: Any) -> tuple[Any, ...] | None:
    if kind is bool:
        return (False, True)
    if typing.get_origin(kind) is Literal:
        return tuple(v for v in typing.get_args(kind) if v != "")
    return None


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def _choice_param(
    name: str,
    choices: tuple[Any, ...],
    kind: Any,
    allowed: tuple[Any, ...] | None,
    spec: FieldSpec,
) -> Param:
    if not choices:
        raise SpaceError(f"{name}: choices is empty")
    for choice in choices:
        if allowed is not None and choice not in allowed:
            raise SpaceError(f"{name}: {choice!r} is not one of {list(allowed)}")
        if allowed is None and not _fits(choice, kind):
            raise SpaceError(f"{name}: choice {choice!r} is not a {_type_name(kind)}")
        if kind in (int, float):
            _check_range(Param(name, choice, choice), spec)
    return Param(name, choices=choices)


def _fits(value: Any, kind: Any) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in (str, Path):
        return isinstance(value, str)
    return False  # tuples, nested sections: not searchable as one value


def _check_range(param: Param, spec: FieldSpec) -> None:
    meta = spec.metadata
    low, high = meta.get("min"), meta.get("max")
    if param.low > param.high:
        raise SpaceError(f"{param.name}: low {param.low:g} is above high {param.high:g}")
    if low is not None and (param.low < low or (meta.get("min_open") and param.low == low)):
        raise SpaceError(f"{param.name}: {param.low:g} is below the field's minimum {low:g}")
    if high is not None and (param.high > high or (meta.get("max_open") and param.high == high)):
        raise SpaceError(f"{param.name}: {param.high:g} is above the field's maximum {high:g}")
    if param.log and param.low <= 0:
        raise SpaceError(f"{param.name}: a log scale needs low > 0")
    if param.log and param.step:
        raise SpaceError(f"{param.name}: a log scale takes no step")


def trial_config(trial: Suggester, base: TrainConfig, space: Space) -> TrainConfig:
    """`base` with every parameter of `space` drawn by `trial` (a dataclass copy)."""
    values = {name: param.suggest(trial) for name, param in space.items()}
    return apply_values(base, values)


def apply_values(base: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """`base` with dotted field values set; `augment_strength` scales the base augmentation
    first, so an explicitly searched `augment.*` field still wins."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        if name == AUGMENT_STRENGTH:
            continue
        head, _, rest = name.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[name] = _typed(base, name, value)
    if AUGMENT_STRENGTH in values and isinstance(base, ImageTrainConfig):
        top["augment"] = scale_augment(base.augment, float(values[AUGMENT_STRENGTH]))
    for head, fields in nested.items():
        top[head] = dataclasses.replace(top.get(head, getattr(base, head)), **fields)
    return dataclasses.replace(base, **top)


def _typed(base: TrainConfig, name: str, value: Any) -> Any:
    """A TOML/Optuna value as the field's type (a str choice for a Path field)."""
    return Path(value) if isinstance(getattr(base, name), Path) else value


def scale_augment(base: AugmentConfig, strength: float) -> AugmentConfig:
    """Every augmentation of `base` scaled by `strength` (0: all off but flips, whose use is a
    question of the labels, not of strength)."""
    crop = base.crop_scale_min
    if crop > 0:  # a smaller minimum area is a stronger crop; 0 means a centre crop (off)
        crop = 0.0 if strength == 0 else min(1.0, max(0.05, 1 - strength * (1 - crop)))
    return dataclasses.replace(
        base,
        crop_scale_min=crop,
        rotation_degrees=base.rotation_degrees * strength,
        translate_fraction=base.translate_fraction * strength,
        color_jitter=base.color_jitter * strength,
    )
