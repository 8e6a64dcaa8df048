"""Classification metrics in plain numpy (no torch, no scikit-learn), for any classifier.

    cm = confusion_matrix(y_true, y_pred, num_classes)        # rows: truth, columns: predicted
    report = classification_report(y_true, scores)             # scores: (N, classes) probabilities

Conventions (scikit-learn's): a class never predicted has precision 0, one never present has
recall 0, F1 is 0 when precision + recall is 0; macro averages weigh classes equally.

For two classes the binary figures (precision, recall, F1, ROC-AUC, average precision) are those
of the positive class: the one named (`--positive-class`), else `positive_index`'s default. The
default is not "the second label alphabetically" (that made `not_cat` the positive class of a
cat detector): a label that reads as the negative one (`not_cat`, `no-dog`, `non_spam`, `other`,
`negative`, `background`, `false`, `0`, ...) makes the other label positive, as a user means it;
only when neither label reads so does it fall back to the second label (scikit-learn's
`pos_label=1`), and the report says which rule chose it.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# Labels that read as "the absence of the thing": the other label of a pair is the positive one.
_NEGATIVE_LABEL = re.compile(
    r"^(not|no|non|neg|negative|other|others|background|none|false|normal|ham|0)([_\- ]|$)",
    re.IGNORECASE,
)


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


def positive_index(labels: list[str], name: str = "") -> tuple[int, str]:
    """(index of the positive class of two, why it was chosen); see the module docstring.
    Raises ValueError for a name not among the labels, or for more than two classes."""
    if len(labels) != 2:
        if name:
            raise ValueError(
                f"a positive class needs two classes; this model has {len(labels)}: "
                f"{', '.join(labels)}"
            )
        return -1, ""
    if name:
        if name not in labels:
            raise ValueError(f"positive class {name!r} is not a label; labels: {', '.join(labels)}")
        return labels.index(name), "given"
    negative = [bool(_NEGATIVE_LABEL.match(label)) for label in labels]
    if negative.count(True) == 1:
        return negative.index(False), f"the other label of {labels[negative.index(True)]!r}"
    return 1, "the second label (name one with --positive-class)"


def precision_recall_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precisions, recalls) for binary labels and scores of the positive class, one point per
    distinct threshold from the highest score down, starting at (1, 0) as scikit-learn draws it."""
    y_true = np.asarray(y_true).astype(bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    s_sorted = np.asarray(scores, dtype=np.float64)[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp = np.cumsum(y_true[order])[last].astype(np.float64)
    precision = tp / (last + 1)
    recall = tp / max(int(y_true.sum()), 1)
    return np.r_[1.0, precision], np.r_[0.0, recall]


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve as scikit-learn's `average_precision_score`
    (sum of precision x recall step); nan without positives."""
    if not np.asarray(y_true).astype(bool).any():
        return float("nan")
    precision, recall = precision_recall_curve(y_true, scores)
    return float(np.sum(np.diff(recall) * precision[1:]))


def classification_report(
    y_true: np.ndarray,
    scores: np.ndarray,
    labels: list[str] | None = None,
    positive_class: str = "",
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
    positive, why = positive_index(labels, positive_class)
    if positive >= 0:
        is_positive = np.asarray(y_true) == positive
        report["binary"] = {
            "positive_class": labels[positive],
            "positive_index": positive,
            "positive_chosen_as": why,
            "precision": float(precision[positive]),
            "recall": float(recall[positive]),
            "f1": float(f1[positive]),
            "roc_auc": roc_auc(is_positive, scores[:, positive]),
            "average_precision": average_precision(is_positive, scores[:, positive]),
        }
    return report
