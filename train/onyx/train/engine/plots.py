"""PNG plots for training and evaluation, with matplotlib's Agg backend (no display needed).

plot_training_curves(history, Path("runs/x/curves.png"))
plot_confusion_matrix(cm, labels, Path("eval/confusion_matrix.png"))
plot_roc(fpr, tpr, auc, Path("eval/roc.png"), positive="cat")
plot_precision_recall(precision, recall, ap, Path("eval/pr.png"), positive="cat", base_rate=0.3)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless servers and CI have no display

import matplotlib.pyplot as plt
import numpy as np


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_training_curves(history: list[dict[str, float]], path: Path) -> Path:
    epochs = [h["epoch"] for h in history]
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in (("train", "-o"), ("val", "-s")):
        loss_ax.plot(epochs, [h[f"{key}_loss"] for h in history], style, label=key)
        acc_ax.plot(epochs, [h[f"{key}_accuracy"] for h in history], style, label=key)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    loss_ax.legend()
    acc_ax.legend()
    return _save(figure, path)


def plot_confusion_matrix(cm: np.ndarray, labels: list[str], path: Path) -> Path:
    size = max(4.0, 0.5 * len(labels) + 2)
    figure, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    threshold = cm.max() / 2 if cm.size else 0
    for i in ticks:
        for j in ticks:
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > threshold else "black",
            )
    return _save(figure, path)


def plot_roc(fpr: np.ndarray, tpr: np.ndarray, auc: float, path: Path, positive: str = "") -> Path:
    figure, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f"ROC (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"ROC, positive class {positive!r}" if positive else "ROC",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right")
    return _save(figure, path)


def plot_precision_recall(
    precision: np.ndarray,
    recall: np.ndarray,
    average_precision: float,
    path: Path,
    positive: str = "",
    base_rate: float | None = None,
) -> Path:
    """The precision-recall curve of the positive class; `base_rate` (its share of the data) is
    what a random classifier's precision would be."""
    figure, ax = plt.subplots(figsize=(5, 5))
    ax.step(recall, precision, where="post", label=f"AP {average_precision:.3f}")
    if base_rate is not None:
        ax.axhline(base_rate, linestyle="--", color="grey", label="chance")
    ax.set(
        xlabel="recall",
        ylabel="precision",
        title=f"precision-recall, positive class {positive!r}" if positive else "precision-recall",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower left")
    return _save(figure, path)
