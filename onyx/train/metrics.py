"""Classification metrics over numpy arrays: accuracy, precision/recall/F1, confusion matrix,
ROC-AUC (binary). Integer class indices in, plain floats and arrays out.

    report = classification_report(y_true, y_pred, probabilities, labels)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(y_true == y_pred)) if len(y_true) else 0.0


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes): row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def precision_recall_f1(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 (0 where undefined, as scikit-learn's zero_division=0)."""
    matrix = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    hits = np.diag(matrix)
    predicted, actual = matrix.sum(0), matrix.sum(1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    return precision, recall, f1


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC-AUC: the chance a random positive outscores a random negative (ties count
    half), via average ranks. NaN when only one class is present."""
    positives = y_true == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks over ties
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, probabilities: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Everything above as a JSON-ready dict; macro averages; ROC-AUC only for two classes."""
    precision, recall, f1 = precision_recall_f1(y_true, y_pred, len(labels))
    report: dict[str, Any] = {
        "accuracy": accuracy(y_true, y_pred),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f)}
            for label, p, r, f in zip(labels, precision, recall, f1, strict=True)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, len(labels)).tolist(),
    }
    if len(labels) == 2:
        report["roc_auc"] = roc_auc(y_true, probabilities[:, 1])
    return report
