"""The accuracy gate a faster variant must pass before it is published.

    figures = gate_figures(fp32_logits, variant_logits, targets)
    check_gate(figures, GateThresholds(max_accuracy_drop=1.0, min_agreement=0.99), "int8")

Both files run in ONNX Runtime on the same validation examples, prepared by the served
preprocessing. The variant passes when its top-1 accuracy is at most `max_accuracy_drop` points
below the fp32 export's and its top-1 class equals the fp32 export's on at least `min_agreement`
of the examples; an fp16 variant must also stay within a looser elementwise tolerance of the
fp32 logits (`FP16_ATOL`, `FP16_RTOL`). Parity alone is not enough for int8: logits move by
design; what must hold is the answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# fp16 keeps ~3 significant digits: logits of a few units move by ~1e-2 (fp32 parity: 1e-4, 1e-3).
FP16_ATOL = 5e-2
FP16_RTOL = 2e-2


class VariantRefused(RuntimeError):
    """The variant failed the accuracy gate; the message gives the figures. Nothing published."""


@dataclass(frozen=True)
class GateThresholds:
    # Top-1 accuracy points (0..100) the variant may lose against the fp32 export.
    max_accuracy_drop: float = 1.0
    # Fraction of examples whose top-1 must equal the fp32 export's.
    min_agreement: float = 0.99
    # Elementwise |variant - fp32| <= atol + rtol * |fp32| on the logits (0: not checked).
    atol: float = 0.0
    rtol: float = 0.0


@dataclass(frozen=True)
class GateFigures:
    samples: int
    fp32_accuracy: float  # 0..1
    accuracy: float  # 0..1
    agreement: float  # 0..1
    max_abs_diff: float
    # Whether every logit was within the thresholds' atol + rtol * |fp32| (True when unchecked).
    within_tolerance: bool = True

    @property
    def accuracy_drop(self) -> float:
        """In points (0..100); negative when the variant is more accurate."""
        return 100.0 * (self.fp32_accuracy - self.accuracy)

    def describe(self) -> str:
        return (
            f"top-1 {100 * self.accuracy:.2f}% vs fp32 {100 * self.fp32_accuracy:.2f}% "
            f"(drop {self.accuracy_drop:.2f} points), agreement with fp32 "
            f"{100 * self.agreement:.2f}%, max |logit diff| {self.max_abs_diff:.3g}, "
            f"on {self.samples} validation examples"
        )


def gate_figures(
    fp32_logits: np.ndarray,
    variant_logits: np.ndarray,
    targets: np.ndarray,
    thresholds: GateThresholds | None = None,
) -> GateFigures:
    """(N, classes) logits of both files and (N,) true labels -> the gate's figures."""
    if fp32_logits.shape != variant_logits.shape or len(targets) != len(fp32_logits):
        raise ValueError(
            f"logits {fp32_logits.shape} vs {variant_logits.shape} for {len(targets)} targets"
        )
    if not len(targets):
        raise ValueError("the accuracy gate needs at least one labelled validation example")
    fp32_top, variant_top = fp32_logits.argmax(axis=1), variant_logits.argmax(axis=1)
    within = True
    if thresholds is not None and (thresholds.atol or thresholds.rtol):
        within = bool(
            np.allclose(variant_logits, fp32_logits, atol=thresholds.atol, rtol=thresholds.rtol)
        )
    return GateFigures(
        samples=len(targets),
        fp32_accuracy=float(np.mean(fp32_top == targets)),
        accuracy=float(np.mean(variant_top == targets)),
        agreement=float(np.mean(variant_top == fp32_top)),
        max_abs_diff=float(np.abs(variant_logits - fp32_logits).max()),
        within_tolerance=within,
    )


def refusals(figures: GateFigures, thresholds: GateThresholds) -> list[str]:
    """Why the variant fails the gate, one reason per broken threshold; [] when it passes."""
    reasons = []
    if figures.accuracy_drop > thresholds.max_accuracy_drop:
        reasons.append(
            f"top-1 accuracy drops {figures.accuracy_drop:.2f} points "
            f"(> {thresholds.max_accuracy_drop:g} allowed)"
        )
    if figures.agreement < thresholds.min_agreement:
        reasons.append(
            f"top-1 agrees with fp32 on {100 * figures.agreement:.2f}% of examples "
            f"(< {100 * thresholds.min_agreement:g}% required)"
        )
    if not figures.within_tolerance:
        reasons.append(
            f"max |logit diff| {figures.max_abs_diff:.3g} exceeds atol {thresholds.atol:g} + "
            f"rtol {thresholds.rtol:g} * |fp32|"
        )
    return reasons


def check_gate(figures: GateFigures, thresholds: GateThresholds, variant: str) -> None:
    """Raise VariantRefused, with the figures, unless the variant passes."""
    reasons = refusals(figures, thresholds)
    if reasons:
        raise VariantRefused(
            f"the {variant} variant is refused: {'; '.join(reasons)}. Figures: "
            f"{figures.describe()}. Nothing was published."
        )
