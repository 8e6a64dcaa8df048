"""`onyx evaluate`: the torch checkpoint and its ONNX export give the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from onyx.cli import main
from onyx.train.config import AugmentConfig, ImageTrainConfig
from onyx.train.engine.loop import fit
from onyx.train.evaluate.scoring import evaluate_data, load_predictor, write_outputs
from onyx.train.export import ExportConfig, export_checkpoint
from onyx.train.tasks.registry import task_for
from tests.train.conftest import write_shapes


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(checkpoint, exported model dir, held-out data) for a binary circle-vs-square model."""
    root = tmp_path_factory.mktemp("evaluate")
    data = write_shapes(root / "data", 20, classes=("circle", "square"))
    heldout = write_shapes(root / "heldout", 8, classes=("circle", "square"), seed=1)
    result = fit(
        task_for(
            ImageTrainConfig(
                data=str(data),
                out_dir=str(root / "run"),
                epochs=2,
                image_size=24,
                batch_size=16,
                lr=5e-3,
                augment=AugmentConfig.off(),
            )
        )
    )
    work = root / "export"
    work.mkdir()
    export_checkpoint(ExportConfig(result.best_checkpoint, "shapes", root / "models"), work)
    return result.best_checkpoint, root / "models" / "shapes", heldout


def test_torch_and_onnx_report_the_same_metrics(trained: tuple[Path, Path, Path]) -> None:
    checkpoint, model_dir, heldout = trained
    torch_eval = evaluate_data(load_predictor(checkpoint), heldout)
    onnx_eval = evaluate_data(load_predictor(model_dir), heldout)
    assert torch_eval.report["count"] == 16
    np.testing.assert_allclose(torch_eval.scores, onnx_eval.scores, atol=1e-5)
    assert torch_eval.report["confusion_matrix"] == onnx_eval.report["confusion_matrix"]
    for key in ("accuracy", "macro"):
        assert torch_eval.report[key] == pytest.approx(onnx_eval.report[key]), key
    assert torch_eval.report["binary"]["roc_auc"] == pytest.approx(
        onnx_eval.report["binary"]["roc_auc"]
    )


def test_outputs_metrics_json_and_plots(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    checkpoint, _, heldout = trained
    predictor = load_predictor(checkpoint)
    written = write_outputs(evaluate_data(predictor, heldout), predictor, tmp_path)
    assert sorted(p.name for p in written) == [
        "confusion_matrix.png",
        "curves.png",
        "metrics.json",
        "precision_recall.png",
        "roc.png",
    ]
    for path in written:
        assert path.stat().st_size > 0
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert set(report["per_class"]) == {"circle", "square"}


def test_cli_evaluates_a_model_directory(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, model_dir, heldout = trained
    result = CliRunner().invoke(
        main, ["evaluate", str(model_dir), str(heldout), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "ROC-AUC" in result.output
    assert (tmp_path / "metrics.json").is_file()


def test_unknown_class_folder_lists_the_model_labels(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    checkpoint, _, _ = trained
    data = write_shapes(tmp_path, 2, classes=("circle", "hexagon"))
    with pytest.raises(ValueError, match="allowed: circle, square"):
        evaluate_data(load_predictor(checkpoint), data)


def test_positive_class_default_given_and_wrong(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, model_dir, heldout = trained
    predictor = load_predictor(model_dir)
    default = evaluate_data(predictor, heldout).report["binary"]
    assert default["positive_class"] == "square"  # neither label reads as negative: the second
    chosen = evaluate_data(predictor, heldout, positive_class="circle")
    binary, per_class = chosen.report["binary"], chosen.report["per_class"]
    assert binary["positive_class"] == "circle" and binary["positive_chosen_as"] == "given"
    assert binary["recall"] == pytest.approx(per_class["circle"]["recall"])
    assert binary["precision"] == pytest.approx(per_class["circle"]["precision"])
    # One class's ROC is the other's mirrored: the AUCs of the two classes are equal.
    assert binary["roc_auc"] == pytest.approx(default["roc_auc"])
    result = CliRunner().invoke(
        main,
        ["evaluate", str(model_dir), str(heldout), "-o", str(tmp_path), "--positive-class", "dot"],
    )
    assert result.exit_code == 1 and "not a label; labels: circle, square" in result.output


def test_roc_and_precision_recall_plots_follow_the_positive_class(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    checkpoint, _, heldout = trained
    predictor = load_predictor(checkpoint)
    for positive in ("circle", "square"):
        out = tmp_path / positive
        written = write_outputs(evaluate_data(predictor, heldout, positive_class=positive),
                                predictor, out)  # fmt: skip
        assert {"roc.png", "precision_recall.png"} <= {p.name for p in written}
        report = json.loads((out / "metrics.json").read_text())
        assert report["binary"]["positive_class"] == positive
