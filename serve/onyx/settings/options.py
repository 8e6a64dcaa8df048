"""Click options generated from a config dataclass, so names, types, defaults and help live once.

    @click.command(cls=ConfigCommand, epilog=precedence_epilog("ONYX"))
    @config_options(ServerConfig, envvar_prefix="ONYX")
    def serve(config: ServerConfig) -> None: ...

Every field becomes one option named after it (`max_queue_size` -> `--max-queue-size`):

- `bool` -> `--name/--no-name`; `Literal[...]` -> a choice; `int`, `float`, `str`, `Path`;
- `tuple[X, ...]` / `list[X]` -> comma-separated values (`--mean 0.5,0.5,0.5`; `""` is empty),
  the same on the command line, in an environment variable and (as an array) in the file; the
  option may be repeated, its values joined (`--tag a --tag b,c` is a,b,c);
- `X | None` -> also accepts `none`, which gives None;
- a nested dataclass -> its fields, flattened (metadata `prefix` names them `--prefix-field`);
  an optional nested dataclass stays None unless one of its options is set.

The default shown is the dataclass's. Field metadata, all optional:
`help`, `group` (the --help section), `aliases` (e.g. `("-p",)`), `min` / `max` (and
`min_open` / `max_open`), `exists` (a Path that must exist), `envvar`, `prefix` (nested), and
`cli_default`: the command's default where it must differ from the library's (shown as the
default). Fields named in `arguments` come from click arguments of the same name instead.

`--config FILE` reads TOML whose keys are the field names (nested dataclasses as tables); an
unknown key is an error that lists the valid ones. Paths in it are relative to the working
directory, as on the command line. Precedence, first wins: command line, environment variable
(with `envvar_prefix`: `<PREFIX>_<OPTION_NAME>`), the --config file, the default.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import click
from click.core import ParameterSource

if TYPE_CHECKING:  # generic in recent click (8.2+), plain before: subscript for mypy only
    AnyParamType = click.ParamType[Any, Any]
else:
    AnyParamType = click.ParamType

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

CONFIG_PARAM = "config_file"
_GIVEN_KEY = "onyx.options.given"
_NULLS = ("none", "null")
OTHER_GROUP = "Other options"


class Given(enum.IntEnum):
    """Where a field's value came from; a higher level wins over a lower one."""

    FILE = 1
    ENVIRONMENT = 2
    COMMAND_LINE = 3


_LEVELS = {ParameterSource.COMMANDLINE: Given.COMMAND_LINE,
           ParameterSource.ENVIRONMENT: Given.ENVIRONMENT}  # fmt: skip


def precedence_epilog(envvar_prefix: str | None = None) -> str:
    """The --help line saying where values come from (for the command's epilog)."""
    env = "its environment variable (env var: ...), " if envvar_prefix else ""
    return (
        f"Each option takes its value from, first wins: the command line, {env}"
        "the --config TOML file (keys: the option names with _ for -, a section's in its "
        "[table]), the default shown."
    )


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One leaf field of a (possibly nested) config dataclass, and its option."""

    path: tuple[str, ...]  # field names from the root, e.g. ("tls", "cert")
    name: str  # the option's name without dashes, e.g. "tls-cert"
    type: Any  # the field's annotation, resolved
    default: Any  # dataclasses.MISSING when the field is required
    metadata: Mapping[str, Any]
    group: str

    @property
    def param(self) -> str:
        """The click parameter name: unique and a Python identifier."""
        return "__".join(self.path)

    @property
    def key(self) -> str:
        return ".".join(self.path)


def field_specs(
    cls: type, *, exclude: Sequence[str] = (), group: str = "Options"
) -> list[FieldSpec]:
    """The leaf fields of `cls`, nested dataclasses flattened, in declaration order."""
    specs = list(_walk(cls, (), "", _defaults_of(cls), group, set(exclude)))
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name in seen:
            raise ValueError(
                f"{cls.__name__}: fields {seen[spec.name]} and {spec.key} both make "
                f"--{spec.name}; give the nested one a metadata prefix"
            )
        seen[spec.name] = spec.key
    return specs


def _walk(
    cls: type,
    path: tuple[str, ...],
    prefix: str,
    defaults: Mapping[str, Any],
    group: str,
    exclude: set[str],
) -> typing.Iterator[FieldSpec]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or (not path and f.name in exclude):
            continue
        tp, name = hints[f.name], prefix + f.name.replace("_", "-")
        own_group = f.metadata.get("group", group)
        nested = _nested_class(tp)
        if nested is not None:
            sub_prefix = prefix + (f"{f.metadata['prefix']}-" if f.metadata.get("prefix") else "")
            title = f.metadata.get("group", f.name.replace("_", " ").capitalize())
            table = ".".join((*path, f.name))
            sub_group = f"{title} ([{table}] in a --config file)"
            value = defaults.get(f.name)
            yield from _walk(nested, (*path, f.name), sub_prefix,
                             _defaults_of(nested, value), sub_group, exclude)  # fmt: skip
            continue
        yield FieldSpec((*path, f.name), name, tp, defaults.get(f.name, dataclasses.MISSING),
                        f.metadata, own_group)  # fmt: skip


def _defaults_of(cls: type, instance: Any = None) -> dict[str, Any]:
    """Field defaults; those of `instance` when the parent's default is one."""
    if instance is not None:
        return {f.name: getattr(instance, f.name) for f in dataclasses.fields(cls)}
    pairs = ((f.name, _default_value(f)) for f in dataclasses.fields(cls))
    return {name: value for name, value in pairs if value is not dataclasses.MISSING}


def _nested_class(tp: Any) -> type | None:
    inner, _ = _strip_optional(tp)
    return inner if isinstance(inner, type) and dataclasses.is_dataclass(inner) else None


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    """(X, True) for `X | None`, else (tp, False); a union of Literals becomes one Literal."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return tp, False
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = len(args) < len(typing.get_args(tp))
    if len(args) == 1:
        return args[0], optional
    if all(typing.get_origin(a) is Literal for a in args):
        values = [v for a in args for v in typing.get_args(a)]
        return Literal.__getitem__(tuple(values)), optional
    raise TypeError(f"no option for the union {tp}")


class CommaList(AnyParamType):
    """A tuple or list option as one comma-separated value; a sequence (from TOML) as is."""

    name = "list"

    def __init__(self, item: AnyParamType, container: type[tuple[Any, ...]] | type[list[Any]]):
        self.item, self.container = item, container

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            parts: list[Any] = [p.strip() for p in value.split(",") if p.strip()]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            self.fail(f"expected comma-separated values, got {value!r}", param, ctx)
        return self.container(self.item.convert(p, param, ctx) for p in parts)

    def split_envvar_value(self, rv: str) -> Sequence[str]:
        # The option is `multiple` (repeatable); its environment variable is one comma list.
        return (rv,)


class Nullable(AnyParamType):
    """An optional value: `none` (any case) gives None, anything else the inner type."""

    def __init__(self, inner: AnyParamType):
        self.inner, self.name = inner, inner.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, str) and value.lower() in _NULLS):
            return None
        return self.inner.convert(value, param, ctx)


def click_type(tp: Any, metadata: Mapping[str, Any]) -> AnyParamType:
    """The click type of a field annotation (bool fields are flags, not handled here)."""
    inner, optional = _strip_optional(tp)
    base = _base_type(inner, metadata)
    return Nullable(base) if optional and inner is not str else base


def _base_type(tp: Any, metadata: Mapping[str, Any]) -> AnyParamType:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return click.Choice([str(v) for v in typing.get_args(tp)])
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        item = _base_type(args[0] if args else str, {})
        return CommaList(item, tuple if origin is tuple else list)
    ranged = {k: metadata[k] for k in ("min", "max", "min_open", "max_open") if k in metadata}
    if tp is int:
        return click.IntRange(**ranged) if ranged else click.INT
    if tp is float:
        return click.FloatRange(**ranged) if ranged else click.FLOAT
    if tp is str:
        return click.STRING
    if tp is Path:
        return click.Path(path_type=Path, exists=bool(metadata.get("exists", False)))
    if tp is bool:
        return click.BOOL
    raise TypeError(f"no option for the type {tp!r}")


class ConfigOption(click.Option):
    """An option that remembers its --help section."""

    def __init__(self, *args: Any, group: str = OTHER_GROUP, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group

    def type_cast_value(self, ctx: click.Context, value: Any) -> Any:
        # The default only shows in --help; resolve_config never reads it, so it need not
        # convert (a default Path that must exist need not exist until it is used).
        if ctx.get_parameter_source(self.name or "") is ParameterSource.DEFAULT:
            return value
        value = super().type_cast_value(ctx, value)
        if self.multiple and isinstance(self.type, CommaList):  # repeated: join the lists
            return self.type.container(item for part in value for item in part)
        return value


class ConfigCommand(click.Command):
    """A command whose --help lists options by section (ConfigOption.group), then the rest."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                sections.setdefault(getattr(param, "group", OTHER_GROUP), []).append(record)
        if OTHER_GROUP in sections:  # last, after the config's own sections
            sections[OTHER_GROUP] = sections.pop(OTHER_GROUP)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def _shown_default(spec: FieldSpec) -> str | None:
    value = spec.metadata.get("cli_default", spec.default)
    if value is dataclasses.MISSING or value is None or value in ("", (), []):
        return None
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def _option(spec: FieldSpec, envvar_prefix: str | None, extra: Mapping[str, Any]) -> Decorator:
    md = {**extra, **spec.metadata}  # the dataclass's own metadata wins
    aliases = tuple(md.get("aliases", ()))
    envvar = md.get("envvar") or (
        f"{envvar_prefix}_{spec.name.upper().replace('-', '_')}" if envvar_prefix else None
    )
    text = md.get("help", "")
    if spec.default is dataclasses.MISSING and "cli_default" not in md:
        needed = "(required)" if len(spec.path) == 1 else "(required with this section)"
        text = f"{text} {needed}".strip()
    attrs: dict[str, Any] = {"help": text, "envvar": envvar, "show_envvar": envvar is not None,
                             "group": spec.group, "cls": ConfigOption}  # fmt: skip
    inner, _ = _strip_optional(spec.type)
    if inner is bool:
        default = md.get("cli_default", spec.default)
        decls = [f"--{spec.name}/--no-{spec.name}", *aliases, spec.param]
        attrs.update(default=bool(default), show_default=True)
    else:
        decls = [f"--{spec.name}", *aliases, spec.param]
        kind = click_type(spec.type, md)
        # The value of an option left unset is never read (resolve_config asks for its
        # source); the default only shows in --help, as the dataclass's.
        shown = _shown_default(spec)
        attrs.update(type=kind, default=shown, show_default=shown is not None)
        if isinstance(kind, CommaList):
            # Repeatable; click wants a multiple option's default as a sequence.
            attrs.update(metavar=f"{kind.item.name.upper()},...", multiple=True,
                         default=None if shown is None else (shown,))  # fmt: skip
    return click.option(*decls, **attrs)


def config_options(
    cls: type[T],
    *,
    envvar_prefix: str | None = None,
    arguments: Sequence[str] = (),
    extra: Mapping[str, Mapping[str, Any]] | None = None,
    group: str = "Options",
    name: str = "config",
) -> Callable[[F], F]:
    """Decorate a click command with one option per field of `cls` and `--config FILE`; the
    command receives the resolved `cls` as keyword `name` instead of the separate values.

    `arguments`: top-level fields taken from click arguments of the same name.
    `extra`: metadata per field name (top level) that the command adds where the field's own
    has none, e.g. aliases for a dataclass it does not own: {"out_dir": {"aliases": ("-o",)}}.
    """
    extra = extra or {}
    specs = field_specs(cls, exclude=arguments, group=group)
    unknown = set(extra) - {s.path[0] for s in specs}
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}")
    decorators = [_option(s, envvar_prefix, extra.get(s.path[0], {}) if len(s.path) == 1 else {})
                  for s in specs]  # fmt: skip
    decorators.append(_config_file_option(envvar_prefix))

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {s.param: kwargs.pop(s.param) for s in specs}
            file = kwargs.pop(CONFIG_PARAM)
            fixed = {a: kwargs.pop(a) for a in arguments}
            ctx = click.get_current_context()
            kwargs[name] = resolve_config(ctx, cls, specs, values, file, fixed)
            return fn(*args, **kwargs)

        command: Callable[..., Any] = wrapper
        for decorator in reversed(decorators):
            command = decorator(command)
        return cast(F, command)

    return decorate


def _config_file_option(envvar_prefix: str | None) -> Decorator:
    envvar = f"{envvar_prefix}_CONFIG" if envvar_prefix else None
    return click.option(
        "--config", CONFIG_PARAM, type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar=envvar, show_envvar=envvar is not None, cls=ConfigOption, group=OTHER_GROUP,
        help="TOML file of option values (nested sections as [tables]); options given "
        "otherwise win.",
    )  # fmt: skip


def resolve_config(
    ctx: click.Context,
    cls: type[T],
    specs: Sequence[FieldSpec],
    values: Mapping[str, Any],
    file: Path | None,
    fixed: Mapping[str, Any] | None = None,
) -> T:
    """The dataclass from the values of `specs`' options, the TOML `file` and `fixed` fields.

    Per field, first wins: a value given on the command line or by environment variable, the
    file's, the metadata's `cli_default`, the dataclass default."""
    from_file = _flatten(load_config_file(file, specs)) if file else {}
    params = {p.name: p for p in ctx.command.params}
    chosen: dict[tuple[str, ...], Any] = {(k,): v for k, v in (fixed or {}).items()}
    given: dict[str, Given] = {}
    for spec in specs:
        source = ctx.get_parameter_source(spec.param)
        if source in _LEVELS:
            chosen[spec.path] = values[spec.param]
            given[spec.key] = _LEVELS[source]
        elif spec.path in from_file:
            chosen[spec.path] = _convert(params[spec.param], from_file[spec.path], ctx, file)
            given[spec.key] = Given.FILE
        elif "cli_default" in spec.metadata:
            chosen[spec.path] = spec.metadata["cli_default"]
    ctx.meta[_GIVEN_KEY] = types.MappingProxyType(given)
    return cast(T, _build(cls, (), chosen, {s.path: s for s in specs}))


def given_fields(ctx: click.Context) -> Mapping[str, Given]:
    """Dotted names of the fields set on the command line, by environment or in the file, each
    with where it came from (so a command can tell which of two related values wins)."""
    return cast(Mapping[str, Given], ctx.meta.get(_GIVEN_KEY, {}))


def explicit_fields(ctx: click.Context) -> frozenset[str]:
    """Dotted names of the fields set on the command line, by environment or in the file."""
    return frozenset(given_fields(ctx))


def _convert(param: click.Parameter, value: Any, ctx: click.Context, file: Path | None) -> Any:
    try:
        return param.type.convert(value, param, ctx)
    except click.BadParameter as exc:
        raise click.BadParameter(f"{exc.message} (from {file})", ctx, param) from exc


def load_config_file(path: Path, specs: Sequence[FieldSpec]) -> dict[str, Any]:
    """The TOML file as a nested dict, every key checked against the fields."""
    try:
        with path.open("rb") as stream:
            data = tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from exc
    _check_keys(data, (), specs, path)
    return data


def _check_keys(
    table: Mapping[str, Any], path: tuple[str, ...], specs: Sequence[FieldSpec], file: Path
) -> None:
    depth = len(path)
    valid = sorted({s.path[depth] for s in specs if s.path[:depth] == path and len(s.path) > depth})
    for key, value in table.items():
        if key not in valid:
            where = ".".join((*path, key))
            raise click.BadParameter(
                f"{file}: unknown key {where!r}; valid keys here: {', '.join(valid)}",
                param_hint="--config",
            )
        leaf = any(s.path == (*path, key) for s in specs)
        if leaf and isinstance(value, dict):  # else flattened into keys no field reads
            where = ".".join((*path, key))
            raise click.BadParameter(
                f"{file}: {where!r} takes a value, not a [table]", param_hint="--config"
            )
        if not leaf:
            if not isinstance(value, dict):
                raise click.BadParameter(
                    f"{file}: {key!r} must be a [table]", param_hint="--config"
                )
            _check_keys(value, (*path, key), specs, file)


def _flatten(table: Mapping[str, Any], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out: dict[tuple[str, ...], Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, (*path, key)))
        else:
            out[(*path, key)] = value
    return out


def _build(
    cls: type,
    path: tuple[str, ...],
    chosen: Mapping[tuple[str, ...], Any],
    specs: Mapping[tuple[str, ...], FieldSpec],
    base: Any = None,
) -> Any:
    """`cls` from the chosen values; a nested one starts from its parent's default (`base`)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        here = (*path, f.name)
        nested = _nested_class(hints[f.name])
        if here in chosen:
            kwargs[f.name] = chosen[here]
        elif nested is not None and any(p[: len(here)] == here for p in chosen):
            default = getattr(base, f.name) if base is not None else _default_value(f)
            kwargs[f.name] = _build(nested, here, chosen, specs, default)
    if base is not None:
        return dataclasses.replace(base, **kwargs)
    for f in dataclasses.fields(cls):
        if f.init and f.name not in kwargs and _default_value(f) is dataclasses.MISSING:
            raise click.UsageError(f"missing {_describe(cls, (*path, f.name), specs)}")
    return cls(**kwargs)


def _default_value(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _describe(cls: type, path: tuple[str, ...], specs: Mapping[tuple[str, ...], FieldSpec]) -> str:
    spec = specs.get(path)
    key = ".".join(path)
    if spec is None:
        return f"{key} ({cls.__name__})"
    return f"--{spec.name} (or {key} in the --config file)"
