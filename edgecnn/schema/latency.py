"""Latency, load time and memory as measured (here, or on a phone over adb), and what they were measured on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

PYTORCH_EAGER = "pytorch eager (fp32)"  # the configuration that times the PyTorch model beside the artifacts


@dataclass(frozen=True)
class Device:
    """A phone reached over adb, and the tool that timed on it."""

    serial: str
    model: str
    abi: str
    tool: str
    binary: str


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: Optional[int] = None
    load_average: Optional[list[float]] = None  # 1, 5 and 15 minutes, when the figures were taken
    platform: str = ""
    python: str = ""
    device: Optional[Device] = None  # set when the figures come from a phone

    def line(self) -> str:
        if self.device is not None:
            return f"device: {self.cpu}, serial {self.device.serial} ({self.device.tool})"
        load = "" if self.load_average is None else ", load " + "/".join(f"{v:.2f}" for v in self.load_average)
        return f"machine: {self.cpu}, {self.cores} cores{load}"


@dataclass(frozen=True)
class BenchmarkModelFigures:
    """What LiteRT's benchmark_model printed for one file at one thread count, in ms and MB."""

    runs: int
    min_ms: Optional[float]
    max_ms: Optional[float]
    avg_ms: Optional[float]
    std_ms: Optional[float]
    p5_ms: Optional[float]
    median_ms: Optional[float]
    p95_ms: Optional[float]
    init_ms: Optional[float]
    first_run_ms: Optional[float]
    warmup_avg_ms: Optional[float]
    memory_delta_mb: dict[str, float] = field(default_factory=dict)  # "init", "overall"
    peak_memory_mb: Optional[float] = None


@dataclass(frozen=True)
class Latency:
    """One configuration at one thread count. Here p90 is measured; a phone's benchmark_model gives p95."""

    runs: int
    median_ms: float
    min_ms: float
    p90_ms: Optional[float] = None
    p95_ms: Optional[float] = None
    median_is_mean: bool = False  # benchmark_model printed no median: its mean stands in
    tool: Optional[BenchmarkModelFigures] = None  # what benchmark_model printed, as parsed

    @property
    def upper_ms(self) -> Optional[float]:
        return self.p90_ms if self.p90_ms is not None else self.p95_ms


@dataclass(frozen=True)
class LoadAndMemory:
    """An artifact loaded and run in a fresh process (edgecnn.harness.probe), or why that failed."""

    load_ms: Optional[float] = None
    first_run_ms: Optional[float] = None
    rss_before_load_mib: Optional[float] = None
    peak_rss_mib: Optional[float] = None
    added_peak_rss_mib: Optional[float] = None
    peak_measured: str = ""
    error: Optional[str] = None


@dataclass
class LatencyReport:
    machine: Machine
    threads: dict[str, dict[str, Latency]]  # thread count -> configuration -> figures
    not_measured: dict[str, str]  # artifact -> why it is not timed here
    load_and_memory: dict[str, LoadAndMemory]
    method: str

    @property
    def upper_label(self) -> str:
        first = next(iter(next(iter(self.threads.values())).values()))
        return "p90" if first.p90_ms is not None else "p95"
