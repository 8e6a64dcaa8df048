"""Read, validate and write the per-model config (`models/<name>/config.pbtxt`).

The config is the `onyx.v1.ModelConfig` message in protobuf text format: training writes it when
it publishes a model, the server reads it when it loads one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from google.protobuf import text_format

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.errors import ConfigError

CONFIG_FILE = "config.pbtxt"

# Text-format enum names, for messages that list the allowed values.
DTYPE_NAMES = {
    pb.DATA_TYPE_FLOAT32: "float32",
    pb.DATA_TYPE_INT64: "int64",
    pb.DATA_TYPE_FLOAT16: "float16",
    pb.DATA_TYPE_INT32: "int32",
}


def parse_config(text: str, source: str = "<string>") -> pb.ModelConfig:
    """Parse and validate config text; `source` names the file in error messages."""
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: not a valid ModelConfig: {exc}") from exc
    validate_config(config, source)
    return config


def load_config(path: Path) -> pb.ModelConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read model config: {exc.strerror}") from exc
    return parse_config(text, str(path))


def format_config(config: pb.ModelConfig) -> str:
    return text_format.MessageToString(config)


def save_config(config: pb.ModelConfig, path: Path) -> None:
    """Validate, then write atomically so a polling server never reads half a file."""
    validate_config(config, str(path))
    _atomic_write_text(path, format_config(config))


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    Path(tmp).replace(path)


def validate_config(config: pb.ModelConfig, source: str) -> None:
    """Raise ConfigError naming `source` and the field when the config cannot be served."""
    problems = _problems(config)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


def _problems(config: pb.ModelConfig) -> list[str]:
    problems: list[str] = []
    if not config.name:
        problems.append("name is empty")
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
    if config.batching.max_batch_size < 1:
        problems.append("batching.max_batch_size must be >= 1")
    if config.batching.max_queue_delay_us < 0:
        problems.append("batching.max_queue_delay_us must be >= 0")
    return problems


def _tensor_problems(what: str, spec: pb.TensorSpec) -> list[str]:
    problems = []
    if not spec.name:
        problems.append(f"{what}.name is empty")
    if spec.dtype not in DTYPE_NAMES:
        problems.append(f"{what}.dtype must be one of {sorted(DTYPE_NAMES.values())}")
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
    if text.max_length < 1:
        problems.append("text.max_length must be >= 1")
    return problems
