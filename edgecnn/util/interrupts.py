"""Ctrl-C during long work: stop at the next safe point instead of inside a converter.

Raising KeyboardInterrupt from a signal handler lands wherever Python happens to be; inside
torch.export's bytecode rewriting that aborts the process (SIGABRT, no cleanup, a temporary
folder left behind). So the first SIGINT/SIGTERM only records the request; long loops call
`checkpoint()`, which raises KeyboardInterrupt there. A second Ctrl-C raises at once, for a user
who would rather not wait for the current conversion step.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator, Optional

from edgecnn.util import console

_received: Optional[int] = None


def _handle(signum: int, frame: Optional[FrameType]) -> None:
    global _received
    if _received is not None:
        raise KeyboardInterrupt
    _received = signum
    # through the console: while converters' output goes to a log, stderr is that log
    console.say("edgecnn: interrupt received; stopping at the next safe point (press Ctrl-C again to stop at once)")


def received() -> bool:
    """Whether an interrupt arrived since `deferred_interrupts()` began."""
    return _received is not None


def checkpoint() -> None:
    """Raise KeyboardInterrupt if an interrupt arrived since `deferred_interrupts()` began."""
    if _received is not None:
        raise KeyboardInterrupt


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    global _received
    if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
        yield
        return
    _received = None
    previous = {sig: signal.signal(sig, _handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
        checkpoint()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received = None
