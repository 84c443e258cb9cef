"""Converting one export job to its formats: one after the other, or each format in a process of its own.

The converters are mostly single-threaded Python (graph passes, MLIR, flatbuffer writing), so on a machine
with more than one core the formats of one export run side by side: each in a fresh (spawned) process
that gets the pickled job and writes its files into the job's folder, which no other format touches.
Longest first, so that the short ones fill in beside it.

What a user sees does not change: each child's own console lines are relayed live to the terminal (the
child writes them to a file of its own; its third-party output goes where the parent's went, the export
log), and a format's end is one `[edgecnn] variant: format exported (s)` line. An interrupt stops the
children at their next safe point before the parent gives up the folder; an error in one format is raised
as it was raised in the child.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import signal
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import numpy as np

from edgecnn.formats import FORMATS, Artifact, ExportJob, Format, Refusal
from edgecnn.schema.enums import FormatName
from edgecnn.util import console, interrupts
from edgecnn.util.interrupts import checkpoint

# Measured order of conversion time (mobilenet_v2 alpha 0.75, 224 px): ExecuTorch fp32+int8 ~40 s, TFLite
# ~30 s, Core ML ~15 s, ONNX ~5 s.
LONGEST_FIRST = (FormatName.EXECUTORCH, FormatName.TFLITE, FormatName.COREML, FormatName.ONNX)
POLL_S = 0.2
STOP_GRACE_S = 120  # how long stopped children may take to reach their next safe point


@dataclass
class Converted:
    format: str
    written: list[Union[Artifact, Refusal]]
    seconds: float  # the conversion's, without the parity run
    # each artifact's outputs on the parity images, by path: run where the format's runtime is already
    # imported (the parent would import coremltools, about 6 s, only to run the Core ML check)
    parity_outputs: dict[str, np.ndarray]


# What an export computes in PyTorch (BatchNorm re-estimation, calibration ranges, repair measurements)
# ends up in the files, and a float sum's order depends on the number of intra-op threads: measured,
# mobilenet_v2 alpha 0.35 at 32 px (untrained) gave other fp32 and int8 TFLite bytes at 2 threads than
# at 1, and an export inside a Ray worker (1 thread) other int8 than the same export in a 2-thread
# process. So every export computes with one thread; formats convert side by side in processes instead.
EXPORT_THREADS = 1


@contextmanager
def export_threads() -> Iterator[None]:
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(EXPORT_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def convert_one(fmt: Format, job: ExportJob, parity_images: Optional[np.ndarray] = None) -> Converted:
    """The format's artifacts, then (given `parity_images`) each one's outputs on them."""
    from edgecnn.harness.checks import run_artifact

    started = time.perf_counter()
    with export_threads():
        written = list(fmt.load().export(job))
    seconds = time.perf_counter() - started
    outputs: dict[str, np.ndarray] = {}
    if parity_images is not None:
        for artifact in (w for w in written if isinstance(w, Artifact)):
            checkpoint()
            try:
                outputs[artifact.path] = run_artifact(
                    job.work_dir, artifact.record(job.work_dir), parity_images, progress=False
                )
            except RuntimeError:  # a runtime this machine lacks: the check records why, as it always did
                continue
    return Converted(fmt.name, written, seconds, outputs)


def _convert_in_child(
    name: FormatName, job: ExportJob, console_file: str, parity_images: Optional[np.ndarray]
) -> Converted:
    """Runs in a spawned process: console lines into `console_file`, interrupts deferred as in the parent."""
    from edgecnn.util.interrupts import deferred_interrupts

    with open(console_file, "a", buffering=1, encoding="utf-8") as lines:
        console._stream = lines  # noqa: SLF001 (the child has no terminal of its own to find)
        with deferred_interrupts():
            return convert_one(FORMATS[name], job, parity_images)


def workers_for(formats: list[Format]) -> int:
    return min(len(formats), os.cpu_count() or 1)


def convert_in_processes(
    formats: list[Format],
    job: ExportJob,
    announce: Callable[[Converted], None],
    parity_images: Optional[np.ndarray] = None,
) -> list[Converted]:
    """Every format converted in its own process, at most one per core; results in `formats`' order.
    `announce(converted)` is called in the parent as each format finishes."""
    order = sorted(formats, key=lambda f: LONGEST_FIRST.index(f.name) if f.name in LONGEST_FIRST else 0)
    done: dict[str, Converted] = {}
    label = f"{job.variant}: {len(formats)} formats converted, {workers_for(formats)} at a time"
    with (
        tempfile.TemporaryDirectory(prefix="edgecnn-console-") as folder,
        console.step(label, total=len(formats), announce=False) as advance,
    ):
        files = {f.name: Path(folder) / f"{f.name}.txt" for f in order}
        relayed = dict.fromkeys(files, 0)
        pool = futures.ProcessPoolExecutor(
            max_workers=workers_for(formats), mp_context=multiprocessing.get_context("spawn")
        )
        try:
            pending = {
                pool.submit(_convert_in_child, f.name, job, str(files[f.name]), parity_images): f.name for f in order
            }
            while pending:
                finished, _ = futures.wait(pending, timeout=POLL_S, return_when=futures.FIRST_COMPLETED)
                _relay(files, relayed)
                for future in finished:
                    name = pending.pop(future)
                    done[name] = future.result()  # a child's error is raised here, as it was raised there
                    announce(done[name])
                    advance()
                checkpoint()
        except BaseException as err:
            _stop(pool)
            _relay(files, relayed)
            if interrupts.received() and not isinstance(err, KeyboardInterrupt):
                raise KeyboardInterrupt from None  # a child stopped by the same Ctrl-C: the interrupt it is
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return [done[f.name] for f in formats]


def _relay(files: dict[FormatName, Path], relayed: dict[FormatName, int]) -> None:
    """New complete lines of each child's console file, to the terminal."""
    for name, path in files.items():
        if not path.exists():
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            handle.seek(relayed[name])
            text = handle.read()
        complete = text[: text.rfind("\n") + 1]
        relayed[name] += len(complete.encode("utf-8"))
        for line in complete.splitlines():
            console.say(line)


def _stop(pool: futures.ProcessPoolExecutor) -> None:
    """Ask every child to stop at its next safe point (as a Ctrl-C would), and kill the ones that do not
    within STOP_GRACE_S: nothing may still write into the folder the parent is about to remove."""
    processes = list((pool._processes or {}).values())  # noqa: SLF001 (no public handle on the workers)
    for process in processes:
        if process.is_alive():
            assert process.pid is not None  # a process that is alive has started, so it has a pid
            os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        try:
            process.join(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once
            pass
        if process.is_alive():
            process.kill()
            process.join()
