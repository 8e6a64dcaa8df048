"""`onyx evaluate`: score a torch checkpoint or an exported ONNX model on a labelled image folder.

    onyx evaluate runs/pets/best.pt data/pets --out eval/torch
    onyx evaluate models/pets data/pets --out eval/onnx       # newest version; or models/pets/3

DATA_DIR holds one sub-folder per class (or test/ or val/ with them). Both kinds of model are
fed by the same serving preprocessing from the model's own config, so their numbers agree.
Writes metrics.json, confusion_matrix.png, roc.png (binary) and curves.png (checkpoints).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onyx.proto.v1 import model_config_pb2 as pb
from onyx.serve.preprocess import decode_image, preprocess_image
from onyx.train.config import save_json
from onyx.train.image.data import Sample, scan
from onyx.train.metrics import classification_report, roc_curve

log = logging.getLogger(__name__)

RunBatch = Callable[[np.ndarray], np.ndarray]  # (B, C, H, W) float32 -> (B, classes) logits


@dataclass
class Predictor:
    kind: str  # "torch" or "onnx"
    labels: list[str]
    spec: pb.ImagePreprocessing
    run: RunBatch
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Evaluation:
    report: dict[str, Any]
    scores: np.ndarray  # (N, classes) softmax probabilities
    targets: np.ndarray  # (N,)
    files: list[Path]


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

    from onyx.train.checkpoint import preprocessing_of
    from onyx.train.export import load_model

    model, checkpoint = load_model(path)
    if checkpoint["task"] != "image":
        # Text models are scored by their training run (metrics.json); this reads image folders.
        raise ValueError(
            f"{path} is a {checkpoint['task']} checkpoint; onyx evaluate scores "
            "image models on a folder of class folders"
        )
    spec = preprocessing_of(checkpoint)

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(batch)).numpy())

    return Predictor(
        "torch", list(checkpoint["labels"]), spec, run, list(checkpoint["state"]["history"])
    )


def _onnx_predictor(path: Path) -> Predictor:
    import onnxruntime as ort

    from onyx.serve.layout import CONFIG_FILE, MODEL_FILE, version_config, version_numbers

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
    if not config.HasField("image"):
        raise ValueError(f"{version_dir} is not an image model; onyx evaluate scores image models")
    session = ort.InferenceSession(
        str(version_dir / MODEL_FILE), providers=["CPUExecutionProvider"]
    )

    def run(batch: np.ndarray) -> np.ndarray:
        (logits,) = session.run([config.output.name], {config.input.name: batch})
        return np.asarray(logits)

    log.info("evaluating ONNX model %s", version_dir / MODEL_FILE)
    return Predictor("onnx", list(config.labels), config.image, run)


def labelled_samples(data_dir: Path, labels: Sequence[str]) -> list[Sample]:
    """Images under data_dir/<label>/ (or its test/ or val/), labelled with the model's indices."""
    for part in ("test", "val"):
        if (data_dir / part).is_dir():
            data_dir = data_dir / part
            break
    folders = sorted(
        p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    unknown = [f for f in folders if f not in labels]
    if unknown or not folders:
        raise ValueError(
            f"{data_dir}: class folders {unknown or folders} are not among the "
            f"model's labels; allowed: {', '.join(labels)}"
        )
    found = scan(data_dir, folders)
    return [Sample(s.path, list(labels).index(folders[s.label])) for s in found]


def evaluate_folder(predictor: Predictor, data_dir: Path, batch_size: int = 32) -> Evaluation:
    samples = labelled_samples(data_dir, predictor.labels)
    chunks = []
    for start in range(0, len(samples), batch_size):
        batch = np.stack(
            [
                preprocess_image(decode_image(s.path.read_bytes()), predictor.spec)
                for s in samples[start : start + batch_size]
            ]
        )  # (B, C, H, W)
        chunks.append(softmax(predictor.run(batch)))
    scores = np.concatenate(chunks)
    targets = np.array([s.label for s in samples])
    report = classification_report(targets, scores, predictor.labels)
    report["model_kind"] = predictor.kind
    return Evaluation(report, scores, targets, [s.path for s in samples])


def write_outputs(evaluation: Evaluation, predictor: Predictor, out_dir: Path) -> list[Path]:
    """metrics.json and the plots; returns the files written."""
    from onyx.train import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    save_json(evaluation.report, out_dir / "metrics.json")
    written = [out_dir / "metrics.json"]
    cm = np.asarray(evaluation.report["confusion_matrix"])
    written.append(
        plots.plot_confusion_matrix(cm, predictor.labels, out_dir / "confusion_matrix.png")
    )
    if "binary" in evaluation.report:
        fpr, tpr = roc_curve(evaluation.targets == 1, evaluation.scores[:, 1])
        auc = evaluation.report["binary"]["roc_auc"]
        written.append(plots.plot_roc(fpr, tpr, auc, out_dir / "roc.png"))
    if predictor.history:
        written.append(plots.plot_training_curves(predictor.history, out_dir / "curves.png"))
    return written


def summary(report: dict[str, Any]) -> str:
    macro = report["macro"]
    lines = [
        f"{report['count']} images  accuracy {report['accuracy']:.4f}  macro precision "
        f"{macro['precision']:.4f} recall {macro['recall']:.4f} F1 {macro['f1']:.4f}"
    ]
    if "binary" in report:
        binary = report["binary"]
        lines.append(
            f"positive class {binary['positive_class']!r}: precision "
            f"{binary['precision']:.4f} recall {binary['recall']:.4f} F1 "
            f"{binary['f1']:.4f} ROC-AUC {binary['roc_auc']:.4f}"
        )
    return "\n".join(lines)
