from __future__ import annotations

from pathlib import Path

import pytest

from onyx.contract.errors import ConfigError
from onyx.contract.model_config import (
    VERSION_FIELDS,
    effective_config,
    format_config,
    load_config,
    load_version_config,
    parse_config,
    parse_version_config,
    save_config,
    save_version_config,
    split_config,
    validate_config,
)
from onyx.proto.v1 import model_config_pb2 as pb
from tests.serve.tiny_models import image_config


def test_config_round_trips_through_text_format(tmp_path: Path) -> None:
    config = image_config()
    config.export.opset = 18
    config.version_policy.latest.num_versions = 2
    save_config(config, tmp_path / "config.pbtxt")
    assert load_config(tmp_path / "config.pbtxt") == config
    assert 'name: "tiny"' in (tmp_path / "config.pbtxt").read_text()


def test_split_then_combine_gives_back_the_whole_config(tmp_path: Path) -> None:
    config = image_config()
    config.export.opset = 18
    config.description = "trained on colours"
    policy, version = split_config(config)
    assert not policy.labels and not policy.HasField("image") and not policy.HasField("export")
    assert policy.batching == config.batching and policy.name == "tiny"
    assert list(version.labels) == list(config.labels) and version.export.opset == 18
    save_config(policy, tmp_path / "config.pbtxt")
    save_version_config(version, tmp_path / "model.pbtxt")
    loaded = effective_config(
        load_config(tmp_path / "config.pbtxt"), load_version_config(tmp_path / "model.pbtxt")
    )
    assert loaded == config


def test_a_version_description_replaces_the_model_level_facts_whole() -> None:
    old_layout = image_config()  # every fact at model level, as onyx 0.2 wrote it
    old_layout.export.opset = 17
    assert effective_config(old_layout, None) == old_layout  # no model.pbtxt: defaults apply
    _policy, version = split_config(image_config(labels=["ant", "bee", "cow"]))
    combined = effective_config(old_layout, version)
    assert list(combined.labels) == ["ant", "bee", "cow"]  # replaced, not appended
    assert not combined.HasField("export")  # not mixed in from the model level either
    assert combined.batching == old_layout.batching


def test_version_config_mirrors_the_model_config_fields() -> None:
    """Combining copies fields by name: each must mean the same in both messages."""
    model_fields = pb.ModelConfig.DESCRIPTOR.fields_by_name
    for field in pb.VersionConfig.DESCRIPTOR.fields:
        twin = model_fields[field.name]
        assert (field.number, field.type, field.is_repeated) == (
            twin.number,
            twin.type,
            twin.is_repeated,
        )
    assert "batching" not in VERSION_FIELDS and "version_policy" not in VERSION_FIELDS


def test_invalid_config_names_file_and_every_problem() -> None:
    config = image_config()
    config.ClearField("labels")
    config.image.ClearField("mean")
    config.batching.max_batch_size = 0
    with pytest.raises(ConfigError) as error:
        validate_config(config, "models/x/1")
    message = str(error.value)
    assert message.startswith("models/x/1: ")
    assert "labels is empty" in message
    assert "image.mean and image.std need 3 values each" in message
    assert "max_batch_size" in message


def test_model_level_config_is_checked_for_policy_only() -> None:
    policy, _version = split_config(image_config())
    assert parse_config(format_config(policy)) == policy  # no labels: fine at model level
    policy.batching.max_batch_size = 0
    with pytest.raises(ConfigError, match="max_batch_size must be >= 1"):
        parse_config(format_config(policy), "models/x/config.pbtxt")


def test_a_version_description_is_checked_whole() -> None:
    _policy, version = split_config(image_config())
    version.ClearField("labels")
    with pytest.raises(ConfigError, match=r"models/x/1/model\.pbtxt: labels is empty"):
        parse_version_config(format_config(version), "models/x/1/model.pbtxt")
    with pytest.raises(ConfigError, match="not a valid VersionConfig"):
        parse_version_config("batching { max_batch_size: 4 }")  # policy has no place there


def test_text_model_needs_text_preprocessing() -> None:
    config = image_config()
    config.task = pb.TASK_TEXT
    with pytest.raises(ConfigError, match="text model needs `text` preprocessing"):
        validate_config(config, "x")


def test_syntax_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a valid ModelConfig"):
        parse_config("name: ", "bad.pbtxt")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read model config"):
        load_config(tmp_path / "absent.pbtxt")
