"""Parse, validate, write and combine the model descriptions (`onyx.v1` model_config.proto).

Two messages in protobuf text format (the files they live in are named in `layout`):

* `ModelConfig` (`<model>/config.pbtxt`): the model's serving policy, plus, in repositories
  written before versions described themselves, every per-version fact as a default;
* `VersionConfig` (`<model>/<version>/model.pbtxt`): what one version's model.onnx is.

`effective_config` combines them into the one ModelConfig a version is served with, and
`split_config` cuts a whole ModelConfig (as export builds it) back into the two. Imports nothing
but protobuf and `errors`, so training and tools can use it without the server.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePath

from google.protobuf import text_format

from onyx.contract.errors import ConfigError
from onyx.proto.v1 import model_config_pb2 as pb

# The ModelConfig fields a VersionConfig describes (same names, types and numbers in both).
VERSION_FIELDS: tuple[str, ...] = tuple(f.name for f in pb.VersionConfig.DESCRIPTOR.fields)


# The data types a tensor may declare, by their text-format names (as a .pbtxt spells them);
# onyx.contract.dtypes maps each to numpy, KServe and ONNX Runtime (it needs numpy; this does not).
DATA_TYPES = {
    pb.DataType.Name(code): code
    for code in pb.DataType.values()
    if code != pb.DATA_TYPE_UNSPECIFIED
}


def parse_config(text: str, source: str = "<string>") -> pb.ModelConfig:
    """Parse a model-level config and validate its policy; `source` names the file in errors.

    Its per-version fields are validated per version, once combined (`effective_config`)."""
    config = pb.ModelConfig()
    _parse(text, config, source)
    validate_policy(config, source)
    return config


def parse_version_config(text: str, source: str = "<string>") -> pb.VersionConfig:
    """Parse and validate a version's description."""
    config = pb.VersionConfig()
    _parse(text, config, source)
    validate_version_config(config, source)
    return config


def _parse(text: str, message: pb.ModelConfig | pb.VersionConfig, source: str) -> None:
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        # Only where: the parser's message quotes the file (a config.pbtxt symlinked to a
        # secret would show it to every client through GetModel).
        kind = type(message).__name__
        where = f" (line {exc.GetLine()}, column {exc.GetColumn()})" if exc.GetLine() else ""
        raise ConfigError(f"{source}: not a valid {kind}{where}") from None


def load_config(path: Path) -> pb.ModelConfig:
    return parse_config(_read(path, "model config"), str(path))


def load_version_config(path: Path) -> pb.VersionConfig:
    return parse_version_config(_read(path, "version config"), str(path))


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: {what} is not UTF-8 text") from None


def format_config(config: pb.ModelConfig | pb.VersionConfig) -> str:
    return text_format.MessageToString(config)


def save_config(config: pb.ModelConfig, path: Path) -> None:
    """Validate the policy, then write atomically so a polling server never reads half a file."""
    validate_policy(config, str(path))
    _atomic_write_text(path, format_config(config))


def save_version_config(config: pb.VersionConfig, path: Path) -> None:
    validate_version_config(config, str(path))
    _atomic_write_text(path, format_config(config))


def effective_config(model: pb.ModelConfig, version: pb.VersionConfig | None) -> pb.ModelConfig:
    """The config a version is served with: the model's, with every per-version field taken
    from the version's own description when it has one (whole, never mixed field by field)."""
    config = pb.ModelConfig()
    config.CopyFrom(model)
    if version is not None:
        for name in VERSION_FIELDS:
            config.ClearField(name)
        _copy_set_fields(version, config)
    return config


def split_config(config: pb.ModelConfig) -> tuple[pb.ModelConfig, pb.VersionConfig]:
    """(serving policy, version description) of a whole config, as publishing writes them."""
    policy = pb.ModelConfig()
    policy.CopyFrom(config)
    for name in VERSION_FIELDS:
        policy.ClearField(name)
    version = pb.VersionConfig()
    _copy_set_fields(config, version, VERSION_FIELDS)
    return policy, version


def _copy_set_fields(
    source: pb.ModelConfig | pb.VersionConfig,
    target: pb.ModelConfig | pb.VersionConfig,
    names: tuple[str, ...] | None = None,
) -> None:
    """Copy the set fields of `source` (those in `names`, default all) by name into `target`."""
    for field, value in source.ListFields():
        if names is not None and field.name not in names:
            continue
        if field.is_repeated:
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        # mkstemp makes 0600; a server running as another user must read it (0644 usually).
        os.fchmod(handle.fileno(), umasked(0o666))
    Path(tmp).replace(path)


def umasked(mode: int) -> int:
    """`mode` less the process umask: what `open()` / `mkdir()` would have created."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mode & ~mask


def validate_config(config: pb.ModelConfig, source: str) -> None:
    """Raise ConfigError naming `source` and the field when a version's effective config
    cannot be served."""
    _raise_problems(source, _policy_problems(config) + _fact_problems(config))


def validate_policy(config: pb.ModelConfig, source: str) -> None:
    """The model-level checks: what a config.pbtxt must get right whatever its versions say."""
    _raise_problems(source, _policy_problems(config))


def validate_version_config(config: pb.VersionConfig, source: str) -> None:
    _raise_problems(source, _fact_problems(effective_config(pb.ModelConfig(), config)))


def _raise_problems(source: str, problems: list[str]) -> None:
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


def _policy_problems(config: pb.ModelConfig) -> list[str]:
    problems: list[str] = []
    if not config.name:
        problems.append("name is empty")
    if config.batching.max_batch_size < 1:
        problems.append("batching.max_batch_size must be >= 1")
    if config.batching.max_queue_delay_us < 0:
        problems.append("batching.max_queue_delay_us must be >= 0")
    return problems


def _fact_problems(config: pb.ModelConfig) -> list[str]:
    problems: list[str] = []
    if config.task == pb.TASK_UNSPECIFIED:
        problems.append("task must be TASK_IMAGE or TASK_TEXT")
    if not config.labels:
        problems.append("labels is empty")
    if len(set(config.labels)) != len(config.labels):
        problems.append("labels has duplicates")
    problems += _tensor_problems("input", config.input)
    problems += _tensor_problems("output", config.output)
    if config.output_activation == pb.ACTIVATION_UNSPECIFIED:
        problems.append("output_activation must be set")
    problems += _preprocessing_problems(config)
    return problems


def _tensor_problems(what: str, spec: pb.TensorSpec) -> list[str]:
    problems = []
    if not spec.name:
        problems.append(f"{what}.name is empty")
    if spec.dtype not in DATA_TYPES.values():
        problems.append(f"{what}.dtype must be one of {sorted(DATA_TYPES)}")
    if len(spec.dims) < 2 or any(d == 0 or d < -1 for d in spec.dims):
        problems.append(f"{what}.dims must have a batch axis and positive or -1 sizes")
    return problems


def _preprocessing_problems(config: pb.ModelConfig) -> list[str]:
    kind = config.WhichOneof("preprocessing")
    if config.task == pb.TASK_IMAGE:
        if kind != "image":
            return ["an image model needs `image` preprocessing"]
        return _image_problems(config.image)
    if config.task == pb.TASK_TEXT:
        if kind != "text":
            return ["a text model needs `text` preprocessing"]
        return _text_problems(config.text)
    return []


def _image_problems(image: pb.ImagePreprocessing) -> list[str]:
    problems = []
    if image.crop_height < 1 or image.crop_width < 1:
        problems.append("image.crop_height and image.crop_width must be >= 1")
    channels = 1 if image.color_mode == pb.COLOR_MODE_GRAYSCALE else 3
    if image.color_mode == pb.COLOR_MODE_UNSPECIFIED:
        problems.append("image.color_mode must be set")
    if len(image.mean) != channels or len(image.std) != channels:
        problems.append(f"image.mean and image.std need {channels} values each")
    if any(s <= 0 for s in image.std):
        problems.append("image.std values must be > 0")
    if image.interpolation == pb.INTERPOLATION_UNSPECIFIED:
        problems.append("image.interpolation must be set")
    if image.layout == pb.LAYOUT_UNSPECIFIED:
        problems.append("image.layout must be set")
    return problems


def _text_problems(text: pb.TextPreprocessing) -> list[str]:
    problems = []
    if not text.vocabulary_file:
        problems.append("text.vocabulary_file is empty")
    elif not _is_plain_relative(text.vocabulary_file):
        problems.append("text.vocabulary_file must be a relative path without '..'")
    if text.max_length < 1:
        problems.append("text.max_length must be >= 1")
    return problems


def _is_plain_relative(name: str) -> bool:
    """A path that stays inside the folder it is relative to (before symlinks: `layout.inside`
    checks those when the file is opened)."""
    path = PurePath(name)
    return not path.is_absolute() and ".." not in path.parts and "\\" not in name
