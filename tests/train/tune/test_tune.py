"""`onyx tune` in-process: the search space (defaults, fixed options, the TOML file, bounds), the
objective (pruning from the per-epoch metric, macro F1, the test split never used), the command
end to end on images (results, kept checkpoint, resume) and the best config reproducing its
trial's metric exactly under `onyx train --config`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from onyx.train.commands import train_group, tune_group
from onyx.train.config import AugmentConfig, ImageTrainConfig, TextTrainConfig
from onyx.train.data.reviews import generate_reviews, write_jsonl
from onyx.train.tune.objective import Objective, config_table
from onyx.train.tune.results import dump_toml, write_plots
from onyx.train.tune.space import (
    SpaceError,
    build_space,
    default_space,
    load_space,
    merge,
    scale_augment,
    trial_config,
)
from onyx.train.tune.study import make_storage
from tests.train.conftest import write_shapes


def image_config(**overrides: Any) -> ImageTrainConfig:
    return ImageTrainConfig(data=Path("data"), **overrides)


def test_default_spaces_follow_the_task_and_leave_fixed_options_alone() -> None:
    scratch = default_space(image_config())
    assert set(scratch) == {"lr", "batch_size", "weight_decay", "label_smoothing",
                            "augment_strength"}  # fmt: skip
    transfer = default_space(image_config(weights="imagenet", epochs=4))
    assert {"backbone_lr_scale", "freeze_epochs", "unfreeze"} <= set(transfer)
    assert transfer["lr"].log and transfer["unfreeze"].choices == (-1, 0, 1, 2)
    fixed = default_space(image_config(), fixed=["lr", "augment.hflip"])
    assert "lr" not in fixed and "augment_strength" not in fixed
    text = default_space(TextTrainConfig(data=Path("x.jsonl")))
    assert set(text) == {"lr", "hidden", "layers", "cell", "bidirectional", "dropout",
                         "embed_dim"}  # fmt: skip
    assert text["cell"].choices == ("lstm", "gru") and text["bidirectional"].choices == (
        False,
        True,
    )
    assert text["hidden"].integer and not text["dropout"].integer


def test_a_space_file_narrows_adds_and_switches_off(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text(
        "weight_decay = false\nmomentum = true\n"
        "[lr]\nlow = 0.001\nhigh = 0.01\n"
        "[batch_size]\nchoices = [8]\n"
        "[augment.rotation_degrees]\nlow = 0.0\nhigh = 30.0\n"
        "[optimizer]\n"
    )
    space = merge(default_space(image_config()), load_space(path, ImageTrainConfig))
    assert "weight_decay" not in space
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (0.001, 0.01, True)
    assert space["batch_size"].choices == (8,)
    assert space["optimizer"].choices == ("adamw", "sgd")
    assert (space["momentum"].low, space["momentum"].high) == (0.0, 1.0)  # the field's bounds
    assert space["augment.rotation_degrees"].high == 30.0
    path.write_text("defaults = false\n[seed]\nchoices = [0, 1]\n")
    assert list(merge(default_space(image_config()), load_space(path, ImageTrainConfig))) == [
        "seed"
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"nope": {"low": 0, "high": 1}}, "unknown parameter 'nope'"),
        ({"lr": {"low": 0.0, "high": 0.1}}, "below the field's minimum"),
        ({"label_smoothing": {"low": 0.0, "high": 1.0}}, "above the field's maximum"),
        ({"weight_decay": {"low": 0.0, "high": 0.1, "log": True}}, "log scale needs low > 0"),
        ({"cell": {"choices": ["rnn"]}}, "'rnn' is not one of"),
        ({"model": {"low": 1, "high": 2}}, "takes choices"),
        ({"batch_size": {"choices": [0, 8]}}, "below the field's minimum"),
        ({"epochs": {"low": 3, "high": 1}}, "above high"),
    ],
)
def test_bad_spaces_are_refused_with_the_reason(
    entry: dict[str, dict[str, Any]], message: str
) -> None:
    cls = TextTrainConfig if "cell" in entry else ImageTrainConfig
    with pytest.raises(SpaceError, match=message):
        build_space(entry, cls)


def test_trials_draw_configs_inside_the_space() -> None:
    base = image_config(weights="imagenet", epochs=3)
    space = default_space(base)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        config = trial_config(study.ask(), base, space)
        assert isinstance(config, ImageTrainConfig)
        assert 1e-4 <= config.lr <= 3e-2 and config.batch_size in (16, 32, 64)
        assert 0 <= config.freeze_epochs <= 2 and config.unfreeze in (-1, 0, 1, 2)
        assert 0 <= config.augment.rotation_degrees <= 20.0
        assert config.model == base.model and config.epochs == 3  # fixed fields untouched


def test_augment_strength_scales_every_augmentation_but_flips() -> None:
    base = AugmentConfig()
    assert scale_augment(base, 1.0) == base
    off = scale_augment(base, 0.0)
    assert off == AugmentConfig(0.0, True, 0.0, 0.0, 0.0)
    strong = scale_augment(base, 2.0)
    assert strong.rotation_degrees == 20.0 and strong.crop_scale_min == pytest.approx(0.2)


def test_best_config_toml_reads_back_as_the_same_table() -> None:
    config = image_config(lr=1.2345678901234e-05, mean=(0.5, 0.25), interpolation="bicubic",
                          augment=AugmentConfig(hflip=False, color_jitter=0.1))  # fmt: skip
    table = config_table(config)
    assert "data" not in table and "out_dir" not in table
    assert tomllib.loads(dump_toml(table)) == table


def reviews(tmp_path: Path, count: int = 80) -> Path:
    return write_jsonl(generate_reviews(count, seed=3), tmp_path / "reviews.jsonl")


def text_base(data: Path, **overrides: Any) -> TextTrainConfig:
    fields = {"epochs": 3, "batch_size": 16, "embed_dim": 8, "hidden": 8, "device": "cpu",
              "plots": False, **overrides}  # fmt: skip
    return TextTrainConfig(data=data, **fields)


def test_pruner_stops_a_trial_from_its_epoch_metric(tmp_path: Path) -> None:
    base = text_base(reviews(tmp_path))
    space = build_space({"lr": {"low": 1e-3, "high": 1e-2}}, TextTrainConfig)
    # Every reported value is below 2: the threshold pruner stops the trial after epoch 1.
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=2.0))  # fmt: skip
    study.optimize(Objective(base, space, "accuracy", tmp_path / "study"), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]
    history = json.loads((tmp_path / "study/trial-0000/config.json").read_text())
    assert history["lr"] == trial.params["lr"]  # the trial trained its own config


def test_macro_f1_objective_is_what_onyx_train_reports(tmp_path: Path) -> None:
    base = text_base(reviews(tmp_path), epochs=2)
    space = build_space({"dropout": {"low": 0.0, "high": 0.3}}, TextTrainConfig)
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(base, space, "macro_f1", tmp_path / "study"), n_trials=1)
    trial = study.trials[0]
    metrics = json.loads((tmp_path / "study/trial-0000/metrics.json").read_text())
    assert trial.value == metrics["val"]["macro"]["f1"]
    assert len(trial.intermediate_values) == 2  # one report per epoch


def split_shapes(root: Path) -> Path:
    """train/ val/ test/ folders: the search may use val/, never test/."""
    for part, count, seed in (("train", 24, 0), ("val", 8, 1), ("test", 8, 2)):
        write_shapes(root / part, per_class=count, seed=seed)
    return root


def tune_image(data: Path, out: Path, *extra: str) -> list[str]:
    return ["image", str(data), "--model", "small_cnn", "--weights", "none", "--image-size",
            "16", "--epochs", "2", "--batch-size", "16", "--device", "cpu", "--out", str(out),
            "--study", "shapes", "--pruner", "none", "--no-progress", *extra]  # fmt: skip


@pytest.mark.slow
def test_tune_image_end_to_end_then_resume_then_reproduce(tmp_path: Path) -> None:
    data, out = split_shapes(tmp_path / "shapes"), tmp_path / "tune"
    result = CliRunner().invoke(tune_group, tune_image(data, out, "--trials", "2"))
    assert result.exit_code == 0, result.output
    assert "trial    value" in result.output and "2 complete" in result.output
    study_dir = out / "shapes"
    for name in ("best.toml", "best.json", "history.png", "parallel.png", "importances.png"):
        assert (study_dir / name).is_file(), name
    best = json.loads((study_dir / "best.json").read_text())
    kept = {p.parent.name for p in study_dir.glob("trial-*/best.pt")}
    assert kept == {f"trial-{best['trial']:04d}"}  # only the best trial's checkpoint is kept
    for trial_dir in study_dir.glob("trial-*"):  # the held-out test split was never scored
        assert json.loads((trial_dir / "metrics.json").read_text())["test"] is None

    again = CliRunner().invoke(tune_group, tune_image(data, out, "--trials", "3"))
    assert again.exit_code == 0, again.output
    study = optuna.load_study(study_name="shapes", storage=make_storage(
        f"sqlite:///{out / 'shapes.db'}"))  # fmt: skip
    assert [t.number for t in study.trials] == [0, 1, 2]  # continued, not restarted

    best = json.loads((study_dir / "best.json").read_text())
    train = CliRunner().invoke(train_group, ["image", str(data), "--config",
                                             str(study_dir / "best.toml"), "--out",
                                             str(tmp_path / "again")])  # fmt: skip
    assert train.exit_code == 0, train.output
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert metrics["best_val_accuracy"] == best["value"] == study.best_value
    assert metrics["test"] is not None  # `onyx train` does score the test split


def test_timeout_starts_no_trial_after_it_and_trials_count_the_whole_study(
    tmp_path: Path,
) -> None:
    data = reviews(tmp_path)
    args = ["text", str(data), "--epochs", "1", "--embed-dim", "8", "--hidden", "8",
            "--layers", "1", "--no-plots", "--no-progress", "--out", str(tmp_path / "t"),
            "--study", "s", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(tune_group, [*args, "--timeout", "0.001", "--trials", "5"])
    assert result.exit_code == 0, result.output
    assert "1 complete" in result.output  # the first trial runs, no second one starts
    result = CliRunner().invoke(tune_group, [*args, "--trials", "2"])
    assert result.exit_code == 0, result.output
    assert "2 complete" in result.output  # one more, to the study's 2


def test_one_complete_trial_gives_no_importances_and_no_error(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.01}, distributions={"lr": optuna.distributions.FloatDistribution(
            1e-3, 1e-1)}, value=0.5))  # fmt: skip
    written = write_plots(study, tmp_path)
    assert sorted(p.name for p in written) == ["history.png", "parallel.png"]
    assert write_plots(optuna.create_study(), tmp_path / "empty") == []


def test_nothing_to_search_and_resume_are_refused(tmp_path: Path) -> None:
    data = reviews(tmp_path)
    space = tmp_path / "space.toml"
    space.write_text("defaults = false\n")
    result = CliRunner().invoke(tune_group, ["text", str(data), "--space", str(space)])
    assert result.exit_code == 2 and "nothing to search" in result.output
    result = CliRunner().invoke(tune_group, ["text", str(data), "--resume", "x.pt"])
    assert result.exit_code == 2 and "from scratch" in result.output
    space.write_text("[cell]\nchoices = ['rnn']\n")
    result = CliRunner().invoke(tune_group, ["text", str(data), "--space", str(space)])
    assert result.exit_code == 2 and "'rnn' is not one of" in result.output
