"""`onyx evaluate`: score a torch checkpoint or an exported ONNX model on labelled test data.

    onyx evaluate runs/pets/best.pt data/pets --out eval/torch
    onyx evaluate models/pets data/pets --out eval/onnx       # newest version; or models/pets/3
    onyx evaluate runs/sentiment/best.pt reviews_test.csv --positive-class positive

Image models: DATA holds one sub-folder per class (or test/ or val/ with them). Text models: a
CSV/TSV/JSONL file (the training run's text and label columns, or --text-column/--label-column)
or a folder of label folders of .txt files (IMDb's layout: its test/ is used). Both kinds of
model are fed by the serving preprocessing from the model's own config or checkpoint (image
transform; tokenizer, vocabulary and max length), so checkpoint and export give the same numbers.

Writes metrics.json, confusion_matrix.png, curves.png (checkpoints: the whole run's training
curves, from the run's metrics.json or last.pt, not only best.pt's history up to its epoch) and,
for two classes, roc.png and precision_recall.png of the positive class (see
`onyx.train.engine.metrics.positive_index` for how it is chosen without --positive-class).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.train.config import save_json
from onyx.train.engine.metrics import classification_report, precision_recall_curve, roc_curve
from onyx.train.tasks.labelled import (
    Prepare,
    image_prepare,
    labelled_samples,
    labelled_texts,
    text_prepare,
)

log = logging.getLogger(__name__)

# (B, C, H, W) float32 images or (B, T) int64 token ids -> (B, classes) logits
RunBatch = Callable[[np.ndarray], np.ndarray]


@dataclass
class Predictor:
    kind: str  # "torch" or "onnx"
    task: str  # "image" or "text"
    labels: list[str]
    prepare: Prepare
    run: RunBatch
    history: list[dict[str, float]] = field(default_factory=list)
    # Text: the columns the model was trained from, the default for reading test files.
    columns: tuple[str, str] = ("text", "label")
    # Image: the preprocessing it was trained with (explanations redo it to draw on the crop).
    spec: pb.ImagePreprocessing | None = None


@dataclass
class Labelled:
    items: list[Any]  # image paths or texts
    targets: np.ndarray  # (N,) indices into the model's labels
    names: list[str]  # a path, or "file:line", per item


@dataclass
class Evaluation:
    report: dict[str, Any]
    scores: np.ndarray  # (N, classes) softmax probabilities
    targets: np.ndarray  # (N,)
    names: list[str]
    items: list[Any] = field(default_factory=list)  # what was scored: image paths or texts


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def load_predictor(path: Path) -> Predictor:
    """A checkpoint file (.pt), a model directory (newest version) or a version directory."""
    if path.is_file():
        return _torch_predictor(path)
    return _onnx_predictor(path)


def _torch_predictor(path: Path) -> Predictor:
    import torch

    from onyx.train.export import load_model

    model, checkpoint = load_model(path)
    task = checkpoint["task"]

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(batch)).numpy())

    config = checkpoint.get("config", {})
    columns = (config.get("text_column", "text"), config.get("label_column", "label"))
    labels = list(checkpoint["labels"])
    spec = None
    if task == "image":
        from onyx.train.engine.checkpoint import preprocessing_of

        spec = preprocessing_of(checkpoint)
    return Predictor("torch", task, labels, _checkpoint_prepare(checkpoint), run,
                     run_history(path, checkpoint), columns, spec)  # fmt: skip


def _checkpoint_prepare(checkpoint: dict[str, Any]) -> Prepare:
    if checkpoint["task"] == "image":
        from onyx.train.engine.checkpoint import preprocessing_of

        return image_prepare(preprocessing_of(checkpoint))
    from onyx.contract.text import TextEncoder, Vocabulary

    vocabulary = Vocabulary(checkpoint["vocabulary"])
    return text_prepare(TextEncoder(vocabulary, checkpoint["max_length"], checkpoint["tokenizer"]))


def run_history(path: Path, checkpoint: dict[str, Any]) -> list[dict[str, float]]:
    """The whole run's epochs. best.pt holds the history up to its own epoch (one point when
    epoch 1 was the best); the run folder's metrics.json (written when training ends) or last.pt
    (written every epoch) hold them all. Theirs is used only when it extends the checkpoint's
    own history, so a folder holding another run's files is never mixed in."""
    own: list[dict[str, float]] = list(checkpoint["state"]["history"])
    for candidate in (_metrics_history(path.parent), _last_history(path)):
        if len(candidate) > len(own) and _same_epochs(candidate[: len(own)], own):
            own = candidate
    return own


def _same_epochs(first: list[dict[str, float]], second: list[dict[str, float]]) -> bool:
    keys = ("epoch", "train_loss", "val_loss")
    return all(
        [a.get(k) for k in keys] == [b.get(k) for k in keys]
        for a, b in zip(first, second, strict=True)
    )


def _metrics_history(run_dir: Path) -> list[dict[str, float]]:
    try:
        history = json.loads((run_dir / "metrics.json").read_text()).get("history", [])
    except (OSError, ValueError, AttributeError):
        return []
    return list(history) if isinstance(history, list) else []


def _last_history(path: Path) -> list[dict[str, float]]:
    from onyx.train.engine.checkpoint import LAST, load_checkpoint

    last = path.parent / LAST
    if last == path or not last.is_file():
        return []
    try:
        return list(load_checkpoint(last)["state"]["history"])
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("%s: no training history read (%s)", last, exc)
        return []


def _onnx_predictor(path: Path) -> Predictor:
    import onnxruntime as ort

    from onyx.contract.layout import CONFIG_FILE, MODEL_FILE, version_config, version_numbers

    model_dir, version_dir = (path.parent, path) if path.name.isdigit() else (path, None)
    if not (model_dir / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{path}: not a checkpoint file nor a model directory (no {model_dir / CONFIG_FILE})"
        )
    if version_dir is None:
        versions = version_numbers(model_dir)
        if not versions:
            raise FileNotFoundError(f"{model_dir}: no version folders with {MODEL_FILE}")
        version_dir = model_dir / str(versions[-1])
    # The version's own labels and preprocessing, not whatever the newest version uses.
    config = version_config(model_dir, int(version_dir.name))
    task, prepare = _export_prepare(config, version_dir)
    session = ort.InferenceSession(
        str(version_dir / MODEL_FILE), providers=["CPUExecutionProvider"]
    )

    def run(batch: np.ndarray) -> np.ndarray:
        (logits,) = session.run([config.output.name], {config.input.name: batch})
        return np.asarray(logits)

    log.info("evaluating ONNX model %s", version_dir / MODEL_FILE)
    spec = config.image if config.HasField("image") else None
    return Predictor("onnx", task, list(config.labels), prepare, run, spec=spec)


def _export_prepare(config: pb.ModelConfig, version_dir: Path) -> tuple[str, Prepare]:
    if config.HasField("image"):
        return "image", image_prepare(config.image)
    if config.HasField("text"):
        from onyx.contract.text import load_encoder

        return "text", text_prepare(load_encoder(config.text, version_dir))
    raise ValueError(
        f"{version_dir} takes raw tensors (no image or text preprocessing); onyx evaluate "
        "scores image and text models"
    )


def load_labelled(
    predictor: Predictor, data: Path, columns: tuple[str, str] | None = None
) -> Labelled:
    if predictor.task == "text":
        texts, targets, names = labelled_texts(data, predictor.labels, columns or predictor.columns)
        return Labelled(list(texts), np.array(targets, dtype=np.int64), names)
    samples = labelled_samples(data, predictor.labels)
    return Labelled(
        [s.path for s in samples],
        np.array([s.label for s in samples], dtype=np.int64),
        [str(s.path) for s in samples],
    )


def evaluate_data(
    predictor: Predictor,
    data: Path,
    batch_size: int = 32,
    positive_class: str = "",
    columns: tuple[str, str] | None = None,
) -> Evaluation:
    """Score `predictor` on labelled image folders or a text file; see the module docstring."""
    labelled = load_labelled(predictor, data, columns)
    if not labelled.items:
        raise ValueError(f"{data}: no labelled examples found")
    chunks = [
        softmax(predictor.run(predictor.prepare(labelled.items[start : start + batch_size])))
        for start in range(0, len(labelled.items), batch_size)
    ]
    scores = np.concatenate(chunks)
    report = classification_report(labelled.targets, scores, predictor.labels, positive_class)
    report["model_kind"] = predictor.kind
    report["task"] = predictor.task
    return Evaluation(report, scores, labelled.targets, labelled.names, labelled.items)


def write_outputs(evaluation: Evaluation, predictor: Predictor, out_dir: Path) -> list[Path]:
    """metrics.json and the plots; returns the files written."""
    from onyx.train.engine import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    save_json(evaluation.report, out_dir / "metrics.json")
    written = [out_dir / "metrics.json"]
    cm = np.asarray(evaluation.report["confusion_matrix"])
    written.append(
        plots.plot_confusion_matrix(cm, predictor.labels, out_dir / "confusion_matrix.png")
    )
    if "binary" in evaluation.report:
        written.extend(_binary_plots(evaluation, out_dir))
    if predictor.history:
        written.append(plots.plot_training_curves(predictor.history, out_dir / "curves.png"))
    return written


def _binary_plots(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    from onyx.train.engine import plots

    binary = evaluation.report["binary"]
    positive, name = binary["positive_index"], binary["positive_class"]
    is_positive = evaluation.targets == positive
    scores = evaluation.scores[:, positive]
    fpr, tpr = roc_curve(is_positive, scores)
    precision, recall = precision_recall_curve(is_positive, scores)
    return [
        plots.plot_roc(fpr, tpr, binary["roc_auc"], out_dir / "roc.png", positive=name),
        plots.plot_precision_recall(
            precision,
            recall,
            binary["average_precision"],
            out_dir / "precision_recall.png",
            positive=name,
            base_rate=float(is_positive.mean()),
        ),
    ]


def summary(report: dict[str, Any]) -> str:
    macro = report["macro"]
    unit = "texts" if report.get("task") == "text" else "images"
    lines = [
        f"{report['count']} {unit}  accuracy {report['accuracy']:.4f}  macro precision "
        f"{macro['precision']:.4f} recall {macro['recall']:.4f} F1 {macro['f1']:.4f}"
    ]
    if "binary" in report:
        binary = report["binary"]
        lines.append(
            f"positive class {binary['positive_class']!r} ({binary['positive_chosen_as']}): "
            f"precision {binary['precision']:.4f} recall {binary['recall']:.4f} F1 "
            f"{binary['f1']:.4f} ROC-AUC {binary['roc_auc']:.4f} "
            f"AP {binary['average_precision']:.4f}"
        )
    return "\n".join(lines)
