"""Trainer features on tiny data: multiclass folders with a test split, frozen word vectors,
the warm-up + cosine schedule, and the metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from onyx.train.metrics import classification_report, confusion_matrix, roc_auc
from onyx.train.text_config import TextTrainConfig
from onyx.train.text_engine import fit_text, warmup_cosine

WORDS = {"red": "crimson scarlet ruby", "green": "emerald lime olive", "blue": "navy azure cobalt"}


def write_imdb_style(root: Path, per_label: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, words in WORDS.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(per_label):
                picked = rng.choice(words.split(), size=3)
                (folder / f"{i}.txt").write_text(
                    " ".join(picked) + "<br />the end", encoding="utf-8"
                )
    return root


def test_multiclass_folders_report_validation_and_test(tmp_path: Path) -> None:
    data = write_imdb_style(tmp_path / "data")
    config = TextTrainConfig(
        data=str(data),
        out_dir=str(tmp_path / "run"),
        embed_dim=8,
        hidden=8,
        epochs=2,
        batch_size=8,
        device="cpu",
    )
    result = fit_text(config)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val"]["confusion_matrix"] and len(metrics["val"]["confusion_matrix"]) == 3
    assert "binary" not in metrics["val"]  # ROC-AUC and positive-class figures: binary only
    assert metrics["test"]["confusion_matrix"] and np.sum(metrics["test"]["confusion_matrix"]) == 36
    checkpoint = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["labels"] == ["blue", "green", "red"]
    assert checkpoint["task"] == "text"
    assert "crimson" in checkpoint["vocabulary"]


def test_frozen_word_vectors_stay_frozen(tmp_path: Path) -> None:
    data = write_imdb_style(tmp_path / "data")
    vectors = tmp_path / "vectors.txt"
    lines = [f"{w} {i}.0 {i + 1}.0" for i, w in enumerate(" ".join(WORDS.values()).split())]
    vectors.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = TextTrainConfig(
        data=str(data),
        out_dir=str(tmp_path / "run"),
        embed_dim=2,
        hidden=4,
        epochs=1,
        vectors=str(vectors),
        freeze_vectors=True,
        device="cpu",
        plots=False,
    )
    result = fit_text(config)
    checkpoint = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    row = checkpoint["vocabulary"].index("crimson")
    assert checkpoint["model"]["embedding.weight"][row].tolist() == [0.0, 1.0]


def test_warmup_then_cosine_to_zero() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps=100, warmup_fraction=0.1)
    rates = []
    for _ in range(100):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0.1 and rates[9] == 1.0  # linear warm-up over 10 steps
    assert rates[10] > rates[50] > rates[99] >= 0 and rates[99] < 0.01


def test_metrics_match_hand_computed_values() -> None:
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 2])
    assert confusion_matrix(y_true, y_pred, 3).tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    report = classification_report(y_true, np.eye(3)[y_pred], ["a", "b", "c"])
    assert report["accuracy"] == 4 / 6
    assert report["per_class"]["b"] == {
        "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3,
    }  # fmt: skip
    # AUC: 3 of 4 positive/negative pairs ordered right, one tie counted half.
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.5, 0.5, 0.9])) == 0.875
