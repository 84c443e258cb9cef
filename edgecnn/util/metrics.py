"""How close one set of outputs is to another: SQNR, cosine and top-k agreement, the one place each is computed."""

from __future__ import annotations

import numpy as np

EXACT_DB = 999.0  # JSON has no infinity: a SQNR this high stands for "no noise at all"


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """10 log10(signal / noise) in dB; `EXACT_DB` where there is no noise."""
    if noise_power <= 0:
        return EXACT_DB
    return 10.0 * float(np.log10(max(signal_power, 1e-30) / noise_power))


def logits_sqnr_db(outputs: np.ndarray, reference: np.ndarray) -> float:
    """SQNR of `outputs` against `reference` over every element of every image."""
    outputs, reference = outputs.astype(np.float64), reference.astype(np.float64)
    return sqnr_db(float(np.sum(reference**2)), float(np.sum((outputs - reference) ** 2)))


def cosines(outputs: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per image (first axis), the cosine similarity of the flattened outputs; 0 where either is all zero."""
    a = outputs.astype(np.float64).reshape(len(reference), -1)
    b = reference.astype(np.float64).reshape(len(reference), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(1) / np.where(norms > 0, norms, 1.0), 0.0)


def worst_cosine(outputs: np.ndarray, reference: np.ndarray) -> float:
    return float(cosines(outputs, reference).min())


def top1_agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """The fraction of images whose top-1 class is the reference's."""
    a, b = outputs.reshape(len(reference), -1), reference.reshape(len(reference), -1)
    return float(np.mean(a.argmax(1) == b.argmax(1)))


def top5_agreement(outputs: np.ndarray, reference: np.ndarray) -> float:
    """The fraction of images whose top-5 set (top-k for fewer classes) equals the reference's."""
    a, b = outputs.reshape(len(reference), -1), reference.reshape(len(reference), -1)
    k = min(5, b.shape[1])
    return float(np.mean([set(np.argsort(-x)[:k]) == set(np.argsort(-y)[:k]) for x, y in zip(a, b)]))
