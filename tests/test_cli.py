"""The `onyx` CLI: help teaches, bad arguments are usage errors, commands call the library."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from onyx.cli import main


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "train", "export", "serve", "classify"):
        assert command in result.output


def test_classify_needs_files_or_text() -> None:
    result = CliRunner().invoke(main, ["classify", "--model", "digits"])
    assert result.exit_code == 2
    assert "give image FILES, a folder, or at least one --text" in result.output


def test_train_image_rejects_unknown_model(colour_folder: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["train", "image", str(colour_folder), "--model", "nope", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "small_cnn" in result.output


def test_train_image_with_one_class_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "data" / "only").mkdir(parents=True)
    result = CliRunner().invoke(
        main, ["train", "image", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 1
    assert "need at least 2 class folders" in result.output


@pytest.mark.slow
def test_demo_runs_the_whole_path(tmp_path: Path) -> None:
    from tests.checkout import free_port

    port = free_port()
    result = CliRunner().invoke(
        main, ["demo", "--repository", str(tmp_path / "models"), "--epochs", "2",
               "--port", str(port)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pretrained Lite0, fine-tuned:  val accuracy" in result.output
    assert "same network from scratch:     val accuracy" in result.output
    assert f"held-out accuracy over gRPC on port {port}" in result.output
    assert (tmp_path / "models" / "photos" / "1" / "model.onnx").is_file()
    assert (tmp_path / "models" / "sentiment" / "1" / "model.onnx").is_file()


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (["classify"], ["ONYX_SERVER"]),
        (["bench"], ["ONYX_SERVER", "ONYX_REPOSITORY"]),
        (["export"], ["ONYX_REPOSITORY"]),
        (["demo"], ["ONYX_REPOSITORY"]),
    ],
)
def test_server_and_repository_options_read_the_same_variables(
    command: list[str], variables: list[str]
) -> None:
    output = " ".join(CliRunner().invoke(main, [*command, "--help"]).output.split())
    for variable in variables:
        assert f"env var: {variable}" in output, variable


def test_root_help_lists_the_training_commands_without_importing_torch() -> None:
    import subprocess
    import sys

    from tests.checkout import PYTHONPATH

    script = "import sys, onyx.cli; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", script], env={"PYTHONPATH": PYTHONPATH},
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
