"""Latency measured honestly: warm-up, many runs, configurations interleaved so machine noise hits all alike."""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class Latency:
    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _summarize(samples: list[float]) -> Latency:
    ordered = sorted(samples)
    return Latency(len(ordered), statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
                   ordered[0])


def measure_interleaved(configs: dict[str, Callable[[], object]], rounds: int = 10, runs_per_round: int = 20,
                        warmup: int = 10, progress: bool = True) -> dict[str, Latency]:
    """Time each callable: `warmup` calls each, then `rounds` rounds in which every configuration runs
    `runs_per_round` times in turn (the order rotates each round)."""
    for fn in configs.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in configs}
    names = list(configs)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn = configs[name]
            for _ in range(runs_per_round):
                start = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - start) * 1000)
        if progress:
            print(f"  latency round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    return {name: _summarize(s) for name, s in samples.items()}
