from __future__ import annotations

from pathlib import Path

import pytest

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.errors import ConfigError
from onyx.serve.model_config import format_config, load_config, parse_config, save_config
from tests.serve.tiny_models import image_config


def test_config_round_trips_through_text_format(tmp_path: Path) -> None:
    config = image_config()
    config.export.opset = 18
    config.version_policy.latest.num_versions = 2
    save_config(config, tmp_path / "config.pbtxt")
    assert load_config(tmp_path / "config.pbtxt") == config
    assert 'name: "tiny"' in (tmp_path / "config.pbtxt").read_text()


def test_invalid_config_names_file_and_every_problem() -> None:
    config = image_config()
    config.ClearField("labels")
    config.image.ClearField("mean")
    config.batching.max_batch_size = 0
    with pytest.raises(ConfigError) as error:
        parse_config(format_config(config), "models/x/config.pbtxt")
    message = str(error.value)
    assert message.startswith("models/x/config.pbtxt: ")
    assert "labels is empty" in message
    assert "image.mean and image.std need 3 values each" in message
    assert "max_batch_size" in message


def test_text_model_needs_text_preprocessing() -> None:
    config = image_config()
    config.task = pb.TASK_TEXT
    with pytest.raises(ConfigError, match="text model needs `text` preprocessing"):
        parse_config(format_config(config))


def test_syntax_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a valid ModelConfig"):
        parse_config("name: ", "bad.pbtxt")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read model config"):
        load_config(tmp_path / "absent.pbtxt")
