"""Classification metrics in plain numpy (no torch, no scikit-learn), for any classifier.

    cm = confusion_matrix(y_true, y_pred, num_classes)        # rows: truth, columns: predicted
    report = classification_report(y_true, scores)             # scores: (N, classes) probabilities

Conventions (scikit-learn's): a class never predicted has precision 0, one never present has
recall 0, F1 is 0 when precision + recall is 0; macro averages weigh classes equally. For two
classes the binary figures use the positive class, index 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) counts; [i, j] = items of true class i predicted as j."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    flat = y_true * num_classes + y_pred
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true = np.asarray(y_true)
    return float(np.mean(y_true == np.asarray(y_pred))) if len(y_true) else float("nan")


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 from a confusion matrix."""
    true_positive = np.diag(cm).astype(np.float64)
    precision = _safe_divide(true_positive, cm.sum(axis=0).astype(np.float64))
    recall = _safe_divide(true_positive, cm.sum(axis=1).astype(np.float64))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return precision, recall, f1


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) for binary labels in {0, 1} and scores of
    class 1, one point per distinct threshold, from (0, 0) to (1, 1)."""
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    y_sorted, s_sorted = y_true[order], scores[order]
    # The last index of each run of equal scores: ties move together.
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    positives, negatives = max(int(y_true.sum()), 1), max(int((~y_true).sum()), 1)
    return np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives]


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; ties count half); nan when one class is absent."""
    y_true = np.asarray(y_true).astype(bool)
    if y_true.all() or not y_true.any():
        return float("nan")
    fpr, tpr = roc_curve(y_true, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def classification_report(
    y_true: np.ndarray, scores: np.ndarray, labels: list[str] | None = None
) -> dict[str, Any]:
    """Everything `onyx evaluate` reports, JSON-ready. `scores`: (N, classes)."""
    scores = np.asarray(scores, dtype=np.float64)
    num_classes = scores.shape[1]
    labels = labels or [str(i) for i in range(num_classes)]
    y_pred = scores.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    precision, recall, f1 = precision_recall_f1(cm)
    report: dict[str, Any] = {
        "count": len(y_true),
        "accuracy": accuracy(y_true, y_pred),
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "per_class": {
            label: {
                "precision": float(p),
                "recall": float(r),
                "f1": float(f),
                "support": int(cm[i].sum()),
            }
            for i, (label, p, r, f) in enumerate(zip(labels, precision, recall, f1, strict=True))
        },
        "labels": labels,
        "confusion_matrix": cm.tolist(),
    }
    if num_classes == 2:
        report["binary"] = {
            "positive_class": labels[1],
            "precision": float(precision[1]),
            "recall": float(recall[1]),
            "f1": float(f1[1]),
            "roc_auc": roc_auc(np.asarray(y_true) == 1, scores[:, 1]),
        }
    return report
