"""Metrics against hand-computed cases (and scikit-learn where it is installed)."""

from __future__ import annotations

import numpy as np
import pytest

from onyx.train.engine.metrics import (
    accuracy,
    average_precision,
    classification_report,
    confusion_matrix,
    positive_index,
    precision_recall_curve,
    precision_recall_f1,
    roc_auc,
    roc_curve,
)


def test_confusion_matrix_and_per_class_scores_by_hand() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    precision, recall, f1 = precision_recall_f1(cm)
    # class 0: tp 2, predicted 2, true 3; class 1: tp 1, predicted 2, true 2; class 2: 1, 2, 1
    assert precision.tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert recall.tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert f1.tolist() == pytest.approx([0.8, 0.5, 2 / 3])
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_never_predicted_class_scores_zero_not_nan() -> None:
    cm = confusion_matrix(np.array([0, 1]), np.array([0, 0]), 2)
    precision, recall, f1 = precision_recall_f1(cm)
    assert precision.tolist() == [0.5, 0.0] and recall.tolist() == [1.0, 0.0]
    assert f1[1] == 0.0


def test_roc_auc_by_hand_with_ties() -> None:
    # Positive scores 0.9, 0.4; negatives 0.4, 0.1: pairs (0.9>0.4), (0.9>0.1), (0.4=0.4: half),
    # (0.4>0.1) -> 3.5 / 4.
    y = np.array([1, 1, 0, 0])
    s = np.array([0.9, 0.4, 0.4, 0.1])
    assert roc_auc(y, s) == pytest.approx(0.875)
    fpr, tpr = roc_curve(y, s)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 1.0] and tpr.tolist() == [0.0, 0.5, 1.0, 1.0]
    assert roc_auc(np.array([1, 0]), np.array([0.2, 0.8])) == 0.0
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.8])))


def test_report_binary_uses_the_positive_class() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    report = classification_report(np.array([0, 1, 1, 0]), scores, ["neg", "pos"])
    assert report["accuracy"] == 0.5
    assert report["binary"]["positive_class"] == "pos"
    assert report["binary"]["precision"] == pytest.approx(0.5)
    assert report["binary"]["recall"] == pytest.approx(0.5)
    assert report["binary"]["roc_auc"] == pytest.approx(0.75)
    assert report["confusion_matrix"] == [[1, 1], [1, 1]]


def test_agrees_with_scikit_learn_on_random_data() -> None:
    import sklearn.metrics as sk

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    scores = rng.random((200, 4))
    y_pred = scores.argmax(1)
    report = classification_report(y_true, scores)
    assert report["macro"]["f1"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro"))
    assert report["macro"]["precision"] == pytest.approx(
        sk.precision_score(y_true, y_pred, average="macro")
    )
    binary = rng.integers(0, 2, 200)
    assert roc_auc(binary, scores[:, 1]) == pytest.approx(sk.roc_auc_score(binary, scores[:, 1]))


@pytest.mark.parametrize(
    ("labels", "name", "expected"),
    [
        (["cat", "not_cat"], "", 0),  # the bug: alphabetical order made not_cat positive
        (["dog", "no-dog"], "", 0),
        (["negative", "positive"], "", 1),
        (["other", "rocket"], "", 1),
        (["ham", "spam"], "", 1),
        (["0", "1"], "", 1),
        (["cat", "dog"], "", 1),  # nothing reads as negative: the second label
        (["cat", "not_cat"], "not_cat", 1),
    ],
)
def test_positive_index(labels: list[str], name: str, expected: int) -> None:
    assert positive_index(labels, name)[0] == expected


def test_positive_index_refuses_unknown_names_and_many_classes() -> None:
    with pytest.raises(ValueError, match="not a label; labels: cat, not_cat"):
        positive_index(["cat", "not_cat"], "dog")
    with pytest.raises(ValueError, match="needs two classes"):
        positive_index(["a", "b", "c"], "a")
    assert positive_index(["a", "b", "c"]) == (-1, "")


def test_report_uses_the_named_positive_class() -> None:
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    y_true = np.array([0, 1, 0, 1])
    report = classification_report(y_true, scores, ["cat", "not_cat"])
    assert report["binary"]["positive_class"] == "cat"
    assert report["binary"]["recall"] == pytest.approx(1.0)
    assert report["binary"]["precision"] == pytest.approx(2 / 3)


def test_precision_recall_agree_with_scikit_learn() -> None:
    import sklearn.metrics as sk

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 2)  # ties
    assert average_precision(y, s) == pytest.approx(sk.average_precision_score(y, s))
    precision, recall = precision_recall_curve(y, s)
    sk_precision, sk_recall, _ = sk.precision_recall_curve(y, s)
    # scikit-learn lists the points from the lowest threshold up and ends at (1, 0).
    np.testing.assert_allclose(precision[1:], sk_precision[::-1][1:])
    np.testing.assert_allclose(recall[1:], sk_recall[::-1][1:])
