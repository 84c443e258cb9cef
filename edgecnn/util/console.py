"""edgecnn's own console: step lines with their times, progress bars, and third-party output kept out of it.

Converters talk a lot (absl and oneDNN notices, torchao's "Failed to load ... .so", coremltools' warnings
and tqdm bars, litert-torch's progress tree), much of it from C++ straight to file descriptors 1 and 2.
`third_party_to(log)` points both descriptors at a log file for the duration of a job. edgecnn itself
writes to the terminal through a duplicate of the original stderr. So the user sees only edgecnn's lines,
and the log keeps everything else.

Long steps show a progress bar (rich) when stderr is a terminal. Every finished step prints one line with
its time. When stderr is not a terminal (CI logs, pipes), there are no bars, only those lines.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Protocol, TextIO, TypeVar

T = TypeVar("T")


class Advance(Protocol):
    """What `step` yields: `advance()` counts one item, `advance(n)` counts n."""

    def __call__(self, n: int = 1) -> None: ...


_stream: Optional[TextIO] = None  # where edgecnn's own lines go while third-party output is captured
_progress = None  # the live rich.progress.Progress while at least one step is open
_depth = 0


def stream() -> TextIO:
    return _stream if _stream is not None else sys.stderr


def interactive() -> bool:
    try:
        return stream().isatty()
    except (AttributeError, ValueError):
        return False


def say(message: str) -> None:
    """One line of edgecnn's own, on the terminal (never into the third-party log)."""
    if _progress is not None:
        _progress.console.print(message, markup=False, highlight=False, soft_wrap=True)
    else:
        print(message, file=stream(), flush=True)


@contextmanager
def step(
    label: str, total: Optional[int] = None, done: Optional[Callable[[], str]] = None, announce: bool = True
) -> Iterator[Advance]:
    """A named step: a bar while it runs (counted when `total` is given), then `[edgecnn] label: 12.3 s`.

    Yields `advance(n=1)`. `done`, if given, adds a few words to the finished line (called at the end).
    `announce=False`: a bar only, for parts of a step whose own line would be noise.
    Nothing is printed for a step that fails: the error line says what happened.
    """
    global _progress, _depth
    started = time.perf_counter()
    task = None
    if interactive():
        if _progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            _progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=stream(), stderr=False),
                transient=True,
            )
            _progress.start()
        task = _progress.add_task(label, total=total)
    _depth += 1

    def advance(n: int = 1) -> None:
        if task is not None and _progress is not None:
            _progress.advance(task, n)

    try:
        yield advance
        extra = done() if done is not None else ""
        if announce:
            say(f"[edgecnn] {label}{': ' + extra if extra else ''} ({time.perf_counter() - started:.1f} s)")
    finally:
        _depth -= 1
        if task is not None and _progress is not None:
            _progress.remove_task(task)
        if _depth == 0 and _progress is not None:
            _progress.stop()
            _progress = None


def track(items: Iterable[T], label: str, total: Optional[int] = None, announce: bool = True) -> Iterator[T]:
    """Iterate with a counted step around the loop."""
    if total is None:
        listed = list(items)
        items, total = listed, len(listed)
    with step(label, total=total, announce=announce) as advance:
        for item in items:
            yield item
            advance()


@contextmanager
def third_party_to(log: Optional[Path], verbose: bool = False) -> Iterator[None]:
    """Send file descriptors 1 and 2 (Python's and C++'s output alike) to `log` while the block runs.

    edgecnn's own lines keep going to the terminal through `say` and `step`. With `verbose`, or with no
    log, nothing is redirected and third-party output shows live.
    """
    global _stream
    if verbose or log is None or _stream is not None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    console = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    # Python-level writes too (warnings.warn, print): where sys.stdout/sys.stderr are not the descriptors
    # themselves (an embedding program, pytest's capture), they would otherwise reach the terminal
    python_streams = sys.stdout, sys.stderr
    log_text = open(log, "a", buffering=1, encoding="utf-8", errors="replace")
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout = sys.stderr = log_text
        _stream = console
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = python_streams
        log_text.close()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        _stream = None
        console.close()


@contextmanager
def third_party_into(folder: Path, name: str, verbose: bool = False) -> Iterator[Path]:
    """`third_party_to` a hidden file beside `folder`, moved in as `folder/name` once the command has made
    `folder` anew (a report folder is written whole at the end); removed if it did not. Yields the final path."""
    final = folder / name
    if verbose:
        yield final
        return
    # nothing is created for it: a folder that is not there yet (or not a folder) gets the log in the temp dir
    beside = folder.parent if folder.parent.is_dir() else Path(tempfile.gettempdir())
    pending = beside / f".{folder.name}.{name}.{os.getpid()}"

    def identity() -> Optional[int]:
        return folder.stat().st_ino if folder.is_dir() else None

    earlier = identity()  # a folder written whole is a new folder: an earlier one is never touched
    try:
        with third_party_to(pending):
            yield final
    finally:
        if identity() not in (None, earlier) and pending.exists():
            os.replace(pending, final)
        else:
            pending.unlink(missing_ok=True)
