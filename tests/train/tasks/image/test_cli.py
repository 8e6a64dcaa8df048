"""`onyx train image` end to end through click, single process and under torchrun (DDP)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from onyx.cli import main
from tests.checkout import PYTHONPATH, free_port


def test_train_image_cli_small_cnn(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "image",
        str(shapes_dir),
        "--model",
        "small_cnn",
        "--weights",
        "none",
        "--image-size",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--no-hflip",
        "--rotation-degrees",
        "0",
        "--out",
        str(out),
        "--patience",
        "3",
        "--label-smoothing",
        "0.1",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "best val accuracy" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["augment"]["hflip"] is False and config["image_size"] == 16
    resumed = CliRunner().invoke(main, [*args, "--epochs", "3", "--resume", str(out / "last.pt")])
    assert resumed.exit_code == 0, resumed.output
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 3


def test_bad_choices_list_the_allowed_values(shapes_dir: Path) -> None:
    result = CliRunner().invoke(main, ["train", "image", str(shapes_dir), "--model", "vgg"])
    assert result.exit_code != 0 and "choose one of: efficientnet_b0" in result.output
    result = CliRunner().invoke(main, ["train", "image", str(shapes_dir), "--weights", "x.pt"])
    assert result.exit_code != 0 and "choose imagenet, none" in result.output


def test_one_class_folder_fails_cleanly(tmp_path: Path) -> None:
    from tests.train.conftest import write_shapes

    data = write_shapes(tmp_path / "data", 3, classes=("cat",))
    result = CliRunner().invoke(
        main,
        [
            "train",
            "image",
            str(data),
            "--weights",
            "none",
            "--model",
            "small_cnn",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 1 and "need at least 2 class folders" in result.output


@pytest.mark.slow
def test_torchrun_two_cpu_processes(shapes_dir: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    out = tmp_path / "ddp"
    command = [
        torchrun,
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        "-m",
        "onyx",
        "train",
        "image",
        str(shapes_dir),
        "--model",
        "small_cnn",
        "--weights",
        "none",
        "--image-size",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PYTHONPATH}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "device cpu x2" in done.stderr
    assert done.stdout.count("best val accuracy") == 1  # rank 0 only
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2


def test_resnet18_without_cached_weights_says_where_to_put_them(
    shapes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    result = CliRunner().invoke(
        main,
        ["train", "image", str(shapes_dir), "--model", "resnet18", "--weights", "imagenet",
         "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "resnet18-f37072fd.pth" in result.output and "--weights none" in result.output


def test_sigint_saves_last_and_exits_130(shapes_dir: Path, tmp_path: Path) -> None:
    import signal
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "onyx", "train", "image", str(shapes_dir), "--model",
               "small_cnn", "--weights", "none", "--image-size", "16", "--epochs", "500",
               "--threads", "1", "--out", str(out)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "resume with --resume" in stderr
    import torch

    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] >= 1 and last["epoch"] < 500
