"""Running error sums of a reference tensor against a noisy one: what both int8 inspections report per layer."""

from __future__ import annotations

from typing import Optional

import numpy as np

from edgecnn.util.metrics import EXACT_DB, sqnr_db


class Errors:
    """Running sums over images of a reference tensor against a noisy one, per channel (the last axis)."""

    def __init__(self) -> None:
        self.power: Optional[np.ndarray] = None  # per channel, summed over what was added; None: nothing yet
        self.noise: Optional[np.ndarray] = None
        self.dot = self.norm_ref = self.norm_noisy = 0.0
        self.clipped = self.count = 0

    def add(self, reference: np.ndarray, noisy: np.ndarray) -> None:
        channels = reference.shape[-1] if reference.ndim > 1 else 1
        r = reference.reshape(-1, channels).astype(np.float64)
        n = noisy.reshape(-1, channels).astype(np.float64)
        power, noise = (r**2).sum(0), ((r - n) ** 2).sum(0)
        self.power = power if self.power is None else self.power + power
        self.noise = noise if self.noise is None else self.noise + noise
        self.dot += float((r * n).sum())
        self.norm_ref += float((r**2).sum())
        self.norm_noisy += float((n**2).sum())

    def _sums(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel signal and noise power; an error before anything was added."""
        if self.power is None or self.noise is None:
            raise ValueError("no tensors were added: there is no error to measure")
        return self.power, self.noise

    def sqnr_db(self) -> float:
        power, noise = self._sums()
        return db(float(power.sum()), float(noise.sum()))

    def channel_sqnr_db(self) -> float:
        """SQNR per channel, averaged in dB over the channels that carry a signal.

        A whole-tensor SQNR is dominated by the largest channels: a unit whose few wide channels squeeze
        the others onto a handful of int8 levels keeps a high total SQNR while those channels are lost,
        and the damage shows only in the next layer. Per channel it shows where it happens.
        """
        power, noise = self._sums()
        live = power > 1e-12 * max(float(power.max()), 1e-30)
        if not live.any():
            return EXACT_DB
        return round(float(np.mean([db(p, n) for p, n in zip(power[live], noise[live])])), 3)

    def cosine(self) -> float:
        norms = np.sqrt(self.norm_ref * self.norm_noisy)
        return float(self.dot / norms) if norms > 0 else 0.0

    def rmse(self) -> float:
        return float(np.sqrt(self._sums()[1].sum() / max(self.count, 1)))


def db(power: float, noise: float) -> float:
    return round(sqnr_db(power, noise), 3)
