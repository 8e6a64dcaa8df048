"""The training commands' options are generated from their config dataclasses: one option per
field, the dataclass's default shown, a --config file, the resolved config saved with the run
and the export."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from onyx.cli import main
from onyx.settings.options import ConfigOption
from onyx.train.commands import export_command, train_group
from onyx.train.commands.export import build_export_command
from onyx.train.config import ImageTrainConfig, TextTrainConfig


def _export_config() -> type:
    from onyx.train.export import ExportConfig

    return ExportConfig


def leaf_fields(cls: type, path: tuple[str, ...] = (), base: Any = None) -> dict[str, Any]:
    """'a__b' -> default, for every field of `cls` and of its nested dataclasses (independent
    of the generator's own walk)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        if base is not None:
            default = getattr(base, f.name)
        if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name]):
            out.update(leaf_fields(hints[f.name], (*path, f.name), default))
        else:
            out["__".join((*path, f.name))] = default
    return out


def shown(default: Any) -> str | None:
    """How --help shows a default (None: no default shown)."""
    if default is dataclasses.MISSING or default is None or default in ("", (), []):
        return None
    if isinstance(default, (list, tuple)):
        return ",".join(str(v) for v in default)
    return str(default)


COMMANDS = [
    (lambda: train_group.commands["image"], lambda: ImageTrainConfig, {"data"}),
    (lambda: train_group.commands["text"], lambda: TextTrainConfig, {"data"}),
    (build_export_command, _export_config, {"checkpoint"}),
]


@pytest.mark.parametrize(
    ("command", "config", "arguments"), COMMANDS, ids=["image", "text", "export"]
)
def test_one_option_per_field_showing_the_dataclass_default(
    command: Any, config: Any, arguments: set[str]
) -> None:
    cmd: click.Command = command()
    fields = leaf_fields(config())
    options = [p for p in cmd.params if isinstance(p, ConfigOption) and p.name in fields]
    assert sorted(o.name or "" for o in options) == sorted(set(fields) - arguments)
    assert {p.name for p in cmd.params if isinstance(p, click.Argument)} == arguments
    ctx = click.Context(cmd)
    for option in options:
        record = option.get_help_record(ctx)
        assert record is not None
        default = fields[option.name or ""]
        expected = shown(default)
        if isinstance(default, bool):
            expected = option.opts[0][2:] if default else f"no-{option.opts[0][2:]}"
        if expected is None:
            assert "default:" not in record[1], (option.name, record)
        else:
            assert f"default: {expected}" in record[1], (option.name, record, expected)


def test_image_help_shows_the_dataclass_defaults() -> None:
    output = CliRunner().invoke(main, ["train", "image", "--help"]).output
    flat = " ".join(output.split())
    for name in ("model", "weights"):
        # "--model TEXT <help from the field's metadata> [default: <the dataclass default>]"
        shown = re.search(rf"--{name} TEXT ([^[]*)\[default: ([^]]*)\]", flat)
        assert shown is not None, name
        assert shown.group(1).strip(), f"--{name} has no help text"
        assert shown.group(2) == getattr(ImageTrainConfig, name)
    assert "Examples:" in output and "--config FILE" in output
    assert "Augment ([augment] in a --config file):" in output and output.index(
        "Training:"
    ) < output.index("Other options:")


def test_export_is_listed_without_importing_torch_and_built_when_used() -> None:
    assert export_command.short_help and "ONNX" in export_command.short_help
    result = CliRunner().invoke(main, ["export", "--help"])
    assert result.exit_code == 0 and "--max-batch-size" in result.output
    result = CliRunner().invoke(main, ["export", __file__])
    assert result.exit_code == 2 and "missing --name" in result.output


def test_config_file_then_command_line_into_the_saved_config_and_export(
    shapes_dir: Path, tmp_path: Path
) -> None:
    out, repo = tmp_path / "run", tmp_path / "models"
    file = tmp_path / "run.toml"
    file.write_text(
        'model = "small_cnn"\nweights = "none"\nimage_size = 16\nepochs = 3\nmax_steps = 2\n'
        "label_smoothing = 0.05\n[augment]\nhflip = false\nrotation_degrees = 0.0\n"
    )
    args = ["train", "image", str(shapes_dir), "--config", str(file), "--epochs", "1",
            "--out", str(out), "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert (saved["epochs"], saved["image_size"], saved["label_smoothing"]) == (1, 16, 0.05)
    assert saved["augment"]["hflip"] is False and saved["augment"]["color_jitter"] == 0.2
    result = CliRunner().invoke(
        main, ["export", str(out / "best.pt"), "-n", "shapes", "-r", str(repo),
               "--max-batch-size", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    exported = json.loads((repo / "shapes" / "1" / "export.json").read_text())
    assert exported["export"]["max_batch_size"] == "4" and exported["export"]["name"] == "shapes"


def test_unknown_key_in_a_training_config_file(shapes_dir: Path, tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text("epoch = 3\n")
    result = CliRunner().invoke(main, ["train", "image", str(shapes_dir), "--config", str(file)])
    assert result.exit_code == 2 and "unknown key 'epoch'" in result.output
    assert "epochs" in result.output
