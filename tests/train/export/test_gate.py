"""The accuracy gate on hand-made logits: each threshold refuses on its own, with its numbers."""

from __future__ import annotations

import numpy as np
import pytest

from onyx.train.export.gate import (
    GateThresholds,
    VariantRefused,
    check_gate,
    gate_figures,
    refusals,
)

TARGETS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


def one_hot(classes: list[int], scale: float = 4.0) -> np.ndarray:
    return np.eye(3, dtype=np.float32)[classes] * scale


def test_figures_count_accuracy_and_agreement() -> None:
    fp32 = one_hot([0, 1, 2, 0, 1, 2, 0, 1, 2, 1])  # 9/10 right
    variant = one_hot([0, 1, 2, 0, 1, 2, 0, 1, 1, 1])  # 8/10 right, 9/10 agree
    figures = gate_figures(fp32, variant, TARGETS)
    assert (figures.samples, figures.fp32_accuracy, figures.accuracy) == (10, 0.9, 0.8)
    assert figures.agreement == 0.9
    assert figures.accuracy_drop == pytest.approx(10.0)
    assert figures.max_abs_diff == pytest.approx(4.0)


def test_an_identical_variant_passes_the_tightest_thresholds() -> None:
    logits = one_hot(list(TARGETS))
    figures = gate_figures(logits, logits.copy(), TARGETS)
    check_gate(figures, GateThresholds(max_accuracy_drop=0.0, min_agreement=1.0), "int8")


def test_an_accuracy_drop_past_the_limit_is_refused_with_its_numbers() -> None:
    fp32 = one_hot(list(TARGETS))
    variant = one_hot([0, 1, 2, 0, 1, 2, 0, 1, 2, 1])
    figures = gate_figures(fp32, variant, TARGETS)
    thresholds = GateThresholds(max_accuracy_drop=5.0, min_agreement=0.5)
    assert refusals(figures, thresholds) == ["top-1 accuracy drops 10.00 points (> 5 allowed)"]
    with pytest.raises(VariantRefused, match=r"int8 variant is refused.*top-1 90.00% vs fp32 100"):
        check_gate(figures, thresholds, "int8")


def test_disagreement_is_refused_even_when_accuracy_holds() -> None:
    """Two wrong answers swapped for two others: same accuracy, 60% agreement."""
    fp32 = one_hot([0, 1, 2, 0, 1, 2, 1, 2, 2, 0])  # wrong at 6, 7
    variant = one_hot([0, 1, 2, 1, 2, 2, 0, 1, 2, 0])  # wrong at 3, 4
    figures = gate_figures(fp32, variant, TARGETS)
    assert figures.accuracy_drop == pytest.approx(0.0)
    reasons = refusals(figures, GateThresholds(max_accuracy_drop=1.0, min_agreement=0.99))
    assert reasons == ["top-1 agrees with fp32 on 60.00% of examples (< 99% required)"]


def test_the_fp16_tolerance_refuses_logits_that_move_too_far() -> None:
    fp32 = one_hot(list(TARGETS))
    thresholds = GateThresholds(atol=5e-2, rtol=2e-2)
    close = gate_figures(fp32, fp32 + 0.05, TARGETS, thresholds)
    assert refusals(close, thresholds) == []
    far = gate_figures(fp32, fp32 + 0.2, TARGETS, thresholds)
    assert refusals(far, thresholds) == [
        "max |logit diff| 0.2 exceeds atol 0.05 + rtol 0.02 * |fp32|"
    ]


def test_mismatched_or_empty_inputs_are_errors() -> None:
    with pytest.raises(ValueError, match="logits"):
        gate_figures(one_hot([0, 1]), one_hot([0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="at least one"):
        gate_figures(np.zeros((0, 3)), np.zeros((0, 3)), np.array([], dtype=np.int64))
