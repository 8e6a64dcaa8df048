"""`onyx evaluate` on text models, and the whole run's training curves.

A small LSTM trained once per module on generated reviews; its checkpoint and its ONNX export
are scored on the same test reviews written as CSV, TSV and JSON Lines.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from onyx.cli import main
from onyx.train.config import TextTrainConfig
from onyx.train.data.reviews import Review, generate_reviews, write_jsonl
from onyx.train.engine.loop import fit
from onyx.train.evaluate.scoring import evaluate_data, load_predictor, run_history
from onyx.train.export import ExportConfig, export_checkpoint
from onyx.train.tasks.registry import task_for


def write_table(reviews: list[Review], path: Path, delimiter: str) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(["id", "review", "sentiment"])  # not the training run's column names
        writer.writerows([i, r.text, r.label] for i, r in enumerate(reviews))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(checkpoint, exported model dir, folder of test files)."""
    root = tmp_path_factory.mktemp("evaluate_text")
    train = write_jsonl(generate_reviews(160, seed=0), root / "train.jsonl")
    result = fit(
        task_for(TextTrainConfig(data=train, out_dir=root / "run", epochs=3, embed_dim=8, hidden=8,
                        max_length=32, batch_size=32, device="cpu", plots=False))
    )  # fmt: skip
    work = root / "work"
    work.mkdir()
    export_checkpoint(ExportConfig(result.best_checkpoint, "sentiment", root / "models"), work)
    test = generate_reviews(40, seed=7)
    tests = root / "test"
    tests.mkdir()
    write_jsonl(test, tests / "test.jsonl")
    write_table(test, tests / "test.csv", ",")
    write_table(test, tests / "test.tsv", "\t")
    return result.best_checkpoint, root / "models" / "sentiment", tests


def test_checkpoint_and_export_agree_on_every_format(trained: tuple[Path, Path, Path]) -> None:
    checkpoint, model_dir, tests = trained
    torch_model, onnx_model = load_predictor(checkpoint), load_predictor(model_dir)
    assert torch_model.task == onnx_model.task == "text"
    reference = evaluate_data(torch_model, tests / "test.jsonl")
    assert reference.report["count"] == 40
    # The default positive class of negative/positive is "positive", not the second by chance.
    assert reference.report["binary"]["positive_class"] == "positive"
    for name in ("test.jsonl", "test.csv", "test.tsv"):
        columns = None if name.endswith("jsonl") else ("review", "sentiment")
        onnx_eval = evaluate_data(onnx_model, tests / name, columns=columns)
        np.testing.assert_allclose(onnx_eval.scores, reference.scores, atol=1e-5)
        assert onnx_eval.report["confusion_matrix"] == reference.report["confusion_matrix"]
        assert onnx_eval.report["accuracy"] == reference.report["accuracy"]


def test_cli_writes_the_same_metrics_and_plots_as_for_images(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    checkpoint, model_dir, tests = trained
    for model in (checkpoint, model_dir):
        out = tmp_path / model.name
        args = ["evaluate", str(model), str(tests / "test.csv"), "-o", str(out)]
        result = CliRunner().invoke(
            main, [*args, "--text-column", "review", "--label-column", "sentiment"]
        )
        assert result.exit_code == 0, result.output
        assert "40 texts  accuracy" in result.output and "ROC-AUC" in result.output
        report = json.loads((out / "metrics.json").read_text())
        assert set(report["per_class"]) == {"negative", "positive"}
        plots = {p.name for p in out.iterdir()}
        assert {"confusion_matrix.png", "roc.png", "precision_recall.png"} <= plots
        # Only a checkpoint carries its training run.
        assert ("curves.png" in plots) == (model == checkpoint)


def test_a_missing_column_names_the_columns(trained: tuple[Path, Path, Path]) -> None:
    _, model_dir, tests = trained
    result = CliRunner().invoke(main, ["evaluate", str(model_dir), str(tests / "test.csv")])
    assert result.exit_code == 1
    assert "no column 'text'" in result.output and "review" in result.output


def test_curves_come_from_the_whole_run(trained: tuple[Path, Path, Path]) -> None:
    checkpoint, _, _ = trained
    run_metrics = json.loads((checkpoint.parent / "metrics.json").read_text())
    assert len(load_predictor(checkpoint).history) == len(run_metrics["history"]) == 3


def test_run_history_extends_only_the_same_run(tmp_path: Path) -> None:
    epochs = [
        {"epoch": e, "train_loss": 1.0 / e, "val_loss": 2.0 / e, "val_accuracy": 0.5}
        for e in (1, 2, 3, 4)
    ]
    best = {"state": {"history": epochs[:1]}}  # the best weights were epoch 1's
    (tmp_path / "metrics.json").write_text(json.dumps({"history": epochs}))
    assert run_history(tmp_path / "best.pt", best) == epochs
    other_run = [dict(epochs[0], train_loss=9.0), *epochs[1:]]
    (tmp_path / "metrics.json").write_text(json.dumps({"history": other_run}))
    assert run_history(tmp_path / "best.pt", best) == epochs[:1]


def test_training_reports_the_positive_class_given(tmp_path: Path) -> None:
    train = write_jsonl(generate_reviews(40, seed=3), tmp_path / "train.jsonl")

    def config(positive: str, out: str) -> TextTrainConfig:
        return TextTrainConfig(data=train, out_dir=tmp_path / out, epochs=1, embed_dim=4, hidden=4,
                               device="cpu", plots=False, positive_class=positive)  # fmt: skip

    with pytest.raises(ValueError, match="'neutral' is not a label"):
        fit(task_for(config("neutral", "bad")))
    assert not (tmp_path / "bad" / "last.pt").exists()  # refused before the first epoch
    fit(task_for(config("negative", "run")))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val"]["binary"]["positive_class"] == "negative"
