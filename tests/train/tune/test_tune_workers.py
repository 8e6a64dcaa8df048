"""`onyx tune` in real processes: two workers share one study on a local SQLite storage and
split its trials without duplicates; Ctrl-C (SIGINT) leaves the storage consistent (the running
trial failed, none left running) and the same command then finishes the study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import click
import optuna
import pytest
from optuna.trial import TrialState

from onyx.train.data.reviews import generate_reviews, write_jsonl
from onyx.train.tune.study import make_storage
from tests.checkout import PYTHONPATH, ROOT, modules_loaded_by

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PYTHONPATH}


def tune_text(data: Path, out: Path, *extra: str) -> list[str]:
    # `python -m onyx.train.tune` is `onyx tune` whatever the installed entry points say. A
    # tiny fixed model: the search runs over lr and dropout only (the options given are fixed).
    return [sys.executable, "-m", "onyx.train.tune", "text", str(data), "--out", str(out),
            "--study", "s", "--embed-dim", "8", "--hidden", "8", "--layers", "1", "--cell", "gru",
            "--no-bidirectional", "--batch-size", "8", "--device", "cpu", "--threads", "1",
            "--no-plots", "--pruner", "none", "--no-progress", *extra]  # fmt: skip


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=make_storage(f"sqlite:///{out / 's.db'}"))


@pytest.mark.slow
def test_two_workers_split_one_study_without_duplicates(tmp_path: Path) -> None:
    data = write_jsonl(generate_reviews(160, seed=3), tmp_path / "reviews.jsonl")
    out = tmp_path / "tune"
    command = tune_text(data, out, "--trials", "8", "--epochs", "2")
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=ENV) for _ in range(2)]  # fmt: skip
    for worker in workers:
        _, stderr = worker.communicate(timeout=240)
        assert worker.returncode == 0, stderr[-3000:]
    trials = load(out).trials
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials))) and 8 <= len(trials) <= 9, numbers
    assert all(t.state == TrialState.COMPLETE for t in trials)
    drawn = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(drawn)) == len(drawn)  # no configuration trained twice
    folders = [t.user_attrs["out_dir"] for t in trials]
    assert len(set(folders)) == len(folders)
    by_worker = {t.user_attrs["worker"] for t in trials}
    assert len(by_worker) == 2, by_worker  # both workers took trials


@pytest.mark.slow
def test_ctrl_c_fails_the_running_trial_and_a_rerun_finishes_the_study(tmp_path: Path) -> None:
    data = write_jsonl(generate_reviews(160, seed=3), tmp_path / "reviews.jsonl")
    out = tmp_path / "tune"
    command = tune_text(data, out, "--trials", "3", "--epochs", "5")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=ENV)  # fmt: skip
    first = out / "s" / "trial-0000" / "last.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and time.monotonic() < deadline:  # trial 0 is mid-training
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "run the same command again to continue study s" in stderr
    states = [t.state for t in load(out).trials]
    assert TrialState.FAIL in states and TrialState.RUNNING not in states, states

    rerun = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=240,
                           check=False)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = load(out).trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert [t.number for t in trials] == list(range(len(trials)))
    assert "trial 1 done: accuracy" in rerun.stderr  # each trial's line: metric and params
    assert "lr=" in rerun.stderr
    assert not list((out / "s").glob("*.png"))  # --no-plots: no study plots either


def test_tune_is_an_onyx_command_entry_point() -> None:
    with (ROOT / "train" / "pyproject.toml").open("rb") as stream:
        project = tomllib.load(stream)["project"]
    assert project["entry-points"]["onyx.commands"]["tune"] == "onyx.train.commands:tune_group"
    assert any(dep.startswith("optuna") for dep in project["dependencies"])
    from onyx.train.commands import tune_group

    assert isinstance(tune_group, click.Group) and set(tune_group.commands) == {"image", "text"}
    # `onyx --help` and `onyx serve` import the commands: Optuna and torch wait for a search.
    loaded = modules_loaded_by("onyx.train.commands")
    assert not {m for m in loaded if m.split(".")[0] in ("optuna", "torch", "sqlalchemy")}
