"""How closely an artifact reproduces PyTorch, and the one table of limits per precision."""

from __future__ import annotations

from typing import Optional

import numpy as np

from edgecnn.schema.enums import Precision
from edgecnn.schema.parity import CheckStatus, Limits, Parity
from edgecnn.util import metrics

# Per precision: the largest max-abs error relative to PyTorch's largest |logit|, the smallest cosine
# similarity of any single image's logits, and the smallest top-1 agreement. None: not gated.
THRESHOLDS: dict[Precision, dict[str, Optional[float]]] = {
    Precision.FP32: {"max_rel_error": 1e-4, "min_cosine": 0.9999, "min_top1_agreement": 1.0},
    # fp16 on an untrained net: worst cosines 0.997-0.99999 measured across the zoo's families
    Precision.FP16: {"max_rel_error": None, "min_cosine": 0.99, "min_top1_agreement": None},
    Precision.W8: {"max_rel_error": None, "min_cosine": 0.99, "min_top1_agreement": None},
    Precision.INT8: {"max_rel_error": None, "min_cosine": 0.95, "min_top1_agreement": None},
    # int8 with a few layers left in float (model_int8_mixed.tflite): held to int8's gate
    Precision.INT8_MIXED: {"max_rel_error": None, "min_cosine": 0.95, "min_top1_agreement": None},
}
INT8_PRECISIONS = (Precision.INT8, Precision.INT8_MIXED)
# An fp32 artifact may differ from PyTorch fp32 by a few times what fp32 arithmetic itself costs on the
# model (PyTorch fp32 against float64), in error, in cosine and in top-1: deep nets with random weights
# are ill-conditioned, and there rounding alone reaches 1e-4 (Inception-v3 at alpha 0.5: 1.3e-4); an
# untrained EfficientNet-B7 whose BatchNorm statistics come from 4 images gives photos it has not seen
# logits near 1e5, where fp32 and float64 agree on only 81% of top-1s.
FP32_NOISE_FACTOR = 4.0
# Untrained (random) weights measure the faithfulness of a conversion, not what quantization costs:
# their int8 noise is large (worst cosines 0.34-0.99 measured on the zoo at small widths), so quantized
# precisions are reported but not gated for them. Trained weights get the gates above.
UNGATED_WHEN_UNTRAINED = {Precision.INT8, Precision.INT8_MIXED, Precision.W8}


def status_of(precision: Precision, trained: bool, problems: list[str]) -> CheckStatus:
    """Gated precisions pass or fail on their problems; ungated ones are reported."""
    if not is_gated(precision, trained):
        return CheckStatus.REPORTED
    return CheckStatus.FAILED if problems else CheckStatus.PASSED


def compare(actual: np.ndarray, expected: np.ndarray) -> Parity:
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    cosine = metrics.cosines(actual, expected)
    return Parity(
        images=len(expected),
        max_abs_error=float(error.max()),
        max_rel_error=float(error.max() / max(np.abs(expected).max(), 1e-30)),
        mean_cosine=float(cosine.mean()),
        worst_cosine=float(cosine.min()),
        top1_agreement=metrics.top1_agreement(actual, expected),
        top5_agreement=metrics.top5_agreement(actual, expected),
    )


def is_gated(precision: Precision, trained: bool) -> bool:
    return trained or precision not in UNGATED_WHEN_UNTRAINED


def gate(precision: Precision, limit: str) -> float:
    """`limit` of `precision` from THRESHOLDS, for a caller that needs it set (not None: gated)."""
    value = THRESHOLDS[precision][limit]
    if value is None:
        raise ValueError(f"THRESHOLDS[{precision}] leaves {limit} ungated, and it is needed here")
    return value


def limits(precision: Precision, fp32_noise: Optional[Parity] = None) -> Limits:
    """The limits of `precision`; for fp32, widened to FP32_NOISE_FACTOR x PyTorch fp32's own deviation
    from float64 (`fp32_noise`: PyTorch fp32 compared with the same model in float64)."""
    found = dict(THRESHOLDS[precision])
    if precision == Precision.FP32 and fp32_noise is not None:
        f = FP32_NOISE_FACTOR
        found["max_rel_error"] = max(gate(precision, "max_rel_error"), f * fp32_noise.max_rel_error)
        found["min_cosine"] = min(gate(precision, "min_cosine"), 1.0 - f * (1.0 - fp32_noise.worst_cosine))
        found["min_top1_agreement"] = min(
            gate(precision, "min_top1_agreement"), 1.0 - f * (1.0 - fp32_noise.top1_agreement)
        )
    return Limits(**found)


def violations(
    parity: Parity, precision: Precision, trained: bool = True, fp32_noise: Optional[Parity] = None
) -> list[str]:
    """What breaks the limits of `precision` (see `limits`)."""
    if not is_gated(precision, trained):
        return []
    limit = limits(precision, fp32_noise)
    found = []
    if limit.max_rel_error is not None and parity.max_rel_error > limit.max_rel_error:
        found.append(f"max relative error {parity.max_rel_error:.2e} > {limit.max_rel_error:.1e}")
    if limit.min_cosine is not None and parity.worst_cosine < limit.min_cosine:
        found.append(f"worst cosine {parity.worst_cosine:.5f} < {limit.min_cosine:.5g}")
    if limit.min_top1_agreement is not None and parity.top1_agreement < limit.min_top1_agreement:
        found.append(f"top-1 agreement {parity.top1_agreement:.0%} < {limit.min_top1_agreement:.0%}")
    return found


def distinct_outputs(logits: np.ndarray) -> bool:
    """Whether different inputs give different outputs: comparing degenerate outputs proves nothing."""
    return len(logits) < 2 or float(np.abs(logits - logits[0]).max()) > 1e-6 * max(1.0, float(np.abs(logits).max()))
