"""`onyx train text` in real processes: Ctrl-C saves last.pt and exits 130, and the resumed run
ends exactly where an uninterrupted one does; two gloo processes under torchrun (DDP)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from onyx.train.data.reviews import generate_reviews, write_jsonl
from tests.checkout import PYTHONPATH, free_port

# One thread everywhere: the three runs compared below must do identical float arithmetic.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PYTHONPATH}


def train_text(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "onyx", "train", "text", str(data), "--out", str(out),
            "--embed-dim", "8", "--hidden", "8", "--batch-size", "2", "--epochs", "6",
            "--device", "cpu", *extra]  # fmt: skip


def weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return dict(checkpoint["model"])


def test_sigint_saves_last_and_resume_ends_where_a_straight_run_does(tmp_path: Path) -> None:
    data = write_jsonl(generate_reviews(240, seed=3), tmp_path / "reviews.jsonl")
    out = tmp_path / "run"
    process = subprocess.Popen(
        train_text(data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    deadline = time.monotonic() + 60
    while not (out / "last.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert "resume with --resume" in stderr
    interrupted_at = torch.load(out / "last.pt", weights_only=True)["epoch"]
    assert 1 <= interrupted_at < 6

    resumed = subprocess.run(
        train_text(data, out, "--resume", str(out / "last.pt")),
        capture_output=True, text=True, env=ENV, timeout=120, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = subprocess.run(
        train_text(data, tmp_path / "straight"),
        capture_output=True, text=True, env=ENV, timeout=120, check=False,
    )  # fmt: skip
    assert straight.returncode == 0, straight.stderr[-2000:]

    a, b = weights(out / "last.pt"), weights(tmp_path / "straight" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((out / "metrics.json").read_text())["history"]
    expected = json.loads((tmp_path / "straight" / "metrics.json").read_text())["history"]
    drop = {"seconds"}
    assert [{k: v for k, v in h.items() if k not in drop} for h in history] == [
        {k: v for k, v in h.items() if k not in drop} for h in expected
    ]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None
    data = write_jsonl(generate_reviews(200, seed=4), tmp_path / "reviews.jsonl")
    out = tmp_path / "ddp"
    command = [torchrun, "--nproc-per-node", "2", "--master-port", str(free_port()), "-m", "onyx",
               "train", "text", str(data), "--embed-dim", "8", "--hidden", "8", "--epochs", "2",
               "--batch-size", "16", "--device", "cpu", "--out", str(out)]  # fmt: skip
    done = subprocess.run(
        command, env=ENV, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "device cpu x2" in done.stderr
    assert done.stdout.count("best val accuracy") == 1  # rank 0 only
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2
    checkpoint = torch.load(out / "best.pt", weights_only=True)
    assert checkpoint["task"] == "text" and checkpoint["format"] == 2
