"""`python -m edgecnn.harness.probe ARTIFACT RESOLUTION < record.json`: load time and memory of one artifact.

Runs in a fresh interpreter so that nothing else has loaded or allocated. Everything is imported first (the
runtime, and edgecnn's own format module with what it imports, torch included); then the timed window covers
the runtime alone: creating its session or interpreter from the file (load), one run (first inference), and 5
runs more. Prints one JSON
line. Memory: the peak resident set size while loading and running, less the resident size just before.
Linux resets the peak on request (/proc/self/clear_refs), so imports do not count; elsewhere the peak is
the process's since it started, and the result says so.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**10  # kB
    raise OSError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS to the current RSS
        return True
    except OSError:
        return False


def _rss_mib() -> float:
    try:
        return _status_mib("VmRSS")
    except OSError:
        return float("nan")


def _peak_rss_mib() -> float:
    try:
        return _status_mib("VmHWM")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def main() -> int:
    from pydantic import TypeAdapter

    from edgecnn.formats import ArtifactRecord, format_of

    path, resolution = Path(sys.argv[1]), int(sys.argv[2])
    record = TypeAdapter(ArtifactRecord).validate_json(sys.stdin.read(), strict=True)
    fmt = format_of(record)
    importlib.import_module(fmt.runtime)
    fmt.load()  # edgecnn's module of the format, outside the window: its imports are not the runtime's cost
    image = np.zeros((1, resolution, resolution, 3), dtype=np.uint8)
    reset = _reset_peak()
    before = _rss_mib()
    start = time.perf_counter()
    runner = fmt.runner(path, record)
    loaded = time.perf_counter()
    runner.run(image)
    first = time.perf_counter()
    for _ in range(5):
        runner.run(image)
    peak = _peak_rss_mib()
    print(
        json.dumps(
            {
                "load_ms": round((loaded - start) * 1000, 2),
                "first_run_ms": round((first - loaded) * 1000, 2),
                "rss_before_load_mib": round(before, 1),
                "peak_rss_mib": round(peak, 1),
                "added_peak_rss_mib": round(max(0.0, peak - before), 1),
                "peak_measured": "while loading and running" if reset else "since the process started",
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
