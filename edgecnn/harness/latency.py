"""Latency measured honestly: warm-up, many runs, configurations interleaved so machine noise hits all alike.

Load time and memory are measured apart, each artifact in a fresh process (`edgecnn.harness.probe`): in one
process the runtimes share allocations and the first one to load pays for the rest.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgecnn.formats import Runner, format_of
from edgecnn.schema.latency import PYTORCH_EAGER, Latency, LatencyReport, LoadAndMemory, Machine
from edgecnn.schema.manifest import Manifest, to_json
from edgecnn.util import console
from edgecnn.util.interrupts import checkpoint

ROUNDS = 10
DEFAULT_BUDGET_S = 1.5  # timed seconds per configuration and thread count, spread over the rounds
MAX_RUNS_PER_ROUND = 20


@dataclass(frozen=True)
class LatencyOptions:
    """How `validate` (and `export`, which validates) time the artifacts."""

    threads: tuple[int, ...] = (1, os.cpu_count() or 1)
    budget_s: float = DEFAULT_BUDGET_S
    runs: Optional[int] = None  # fixed timed runs per configuration instead of the time budget

    def __post_init__(self) -> None:
        from edgecnn.util.errors import UsageError

        if self.runs is not None and self.runs < 1:
            raise UsageError(f"--runs must be at least 1, got {self.runs}")
        if any(t < 1 for t in self.threads):
            raise UsageError(f"--threads must be at least 1, got {min(self.threads)}")
        if self.budget_s <= 0:
            raise UsageError(f"the latency budget must be positive, got {self.budget_s}")


def _summarize(samples: list[float]) -> Latency:
    ordered = sorted(samples)
    return Latency(
        len(ordered),
        round(statistics.median(ordered), 4),
        round(ordered[0], 4),
        p90_ms=round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4),
    )


def measure_interleaved(
    configs: dict[str, Callable[[], object]],
    rounds: int = ROUNDS,
    runs_per_round: int = 20,
    warmup: int = 10,
    progress: bool = True,
    budget_s: Optional[float] = None,
    label: str = "latency",
) -> dict[str, Latency]:
    """Time each callable: `warmup` calls each, then `rounds` rounds in which every configuration runs
    `runs_per_round` times in turn (the order rotates each round). With `budget_s`, a configuration runs
    only as often per round as fits its share of the budget (at least once), so a slow model does not
    take minutes while a fast one still gets its 20."""
    per_round = {}
    for name, fn in configs.items():
        start = time.perf_counter()
        for _ in range(warmup):
            checkpoint()
            fn()
        each = (time.perf_counter() - start) / max(warmup, 1)
        fits = runs_per_round if budget_s is None else int(budget_s / rounds / max(each, 1e-6))
        per_round[name] = max(1, min(runs_per_round, fits))
    samples: dict[str, list[float]] = {name: [] for name in configs}
    names = list(configs)
    with console.step(f"{label}: {rounds} rounds", total=rounds) if progress else nullcontext(lambda: None) as advance:
        _rounds(configs, names, rounds, per_round, samples, advance)
    return {name: _summarize(s) for name, s in samples.items()}


def _rounds(configs, names, rounds, per_round, samples, advance) -> None:
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            checkpoint()
            fn = configs[name]
            for _ in range(per_round[name]):
                start = time.perf_counter()
                fn()
                samples[name].append((time.perf_counter() - start) * 1000)
        advance()


def cpu_model() -> str:
    """This machine's CPU, as /proc/cpuinfo names it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> Machine:
    """What the figures were measured on."""
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return Machine(cpu_model(), os.cpu_count(), load, platform.platform(), platform.python_version())


def parse_threads(text: str) -> list[int]:
    """ "1,all" -> [1, cores]; every entry a whole number >= 1."""
    from edgecnn.util.errors import UsageError

    counts = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        value = (os.cpu_count() or 1) if part == "all" else None
        if value is None:
            try:
                value = int(part)
            except ValueError:
                raise UsageError(f"--threads takes whole numbers or 'all', got {part!r}") from None
        if value < 1:
            raise UsageError(f"--threads must be at least 1, got {value}")
        counts.append(value)
    if not counts:
        raise UsageError("--threads is empty")
    return list(dict.fromkeys(counts))


def measure_artifacts(
    model, manifest: Manifest, root: Path, image: np.ndarray, options: LatencyOptions
) -> LatencyReport:
    """Latency of PyTorch eager and every artifact on one image, interleaved, at each thread count;
    then load time and memory of each in a fresh process."""
    import torch

    batch = image[None]
    torch_input = torch.from_numpy(batch).permute(0, 3, 1, 2).float().contiguous()
    not_measured = {}
    results = {}
    torch_threads = torch.get_num_threads()
    runs, budget_s = options.runs, options.budget_s
    try:
        for count in dict.fromkeys(options.threads):
            torch.set_num_threads(count)
            configs: dict[str, Callable[[], object]] = {PYTORCH_EAGER: lambda: model(torch_input)}
            for record in manifest.artifacts:
                fmt = format_of(record)
                if not fmt.timed_here:
                    not_measured[record.path] = fmt.not_timed_reason
                    continue
                runner = fmt.runner(root / record.path, record, threads=count)

                def run(r: Runner = runner) -> object:  # bound now: the loop moves on to the next runner
                    return r.run(batch)

                configs[record.path] = run
            with torch.inference_mode():
                timed = measure_interleaved(
                    configs,
                    runs_per_round=MAX_RUNS_PER_ROUND if runs is None else max(1, -(-runs // ROUNDS)),
                    budget_s=None if runs is not None else budget_s,
                    label=f"latency of {len(configs)} configurations at {count} thread(s)",
                )
            results[str(count)] = timed
    finally:
        torch.set_num_threads(torch_threads)
    return LatencyReport(
        machine(),
        results,
        not_measured,
        probe_all(manifest, root),
        f"one image, batch 1, {ROUNDS} interleaved rounds after 10 warm-up runs; runs per round "
        f"fitted to {budget_s:g} s per configuration unless --runs is given",
    )


def probe_all(manifest: Manifest, root: Path) -> dict[str, LoadAndMemory]:
    """Each artifact loaded and run 5 times in a fresh interpreter: load time and peak RSS."""
    found = {}
    timed = [r for r in manifest.artifacts if format_of(r).timed_here]
    for record in console.track(timed, f"load time and memory of {len(timed)} artifacts, each in a fresh process"):
        checkpoint()
        result = subprocess.run(
            [sys.executable, "-m", "edgecnn.harness.probe", str(root / record.path), str(manifest.resolution)],
            input=json.dumps(to_json(record)),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            found[record.path] = LoadAndMemory(error=(result.stderr.strip().splitlines() or ["no output"])[-1])
        else:
            found[record.path] = LoadAndMemory(**json.loads(result.stdout.strip().splitlines()[-1]))
    return found
