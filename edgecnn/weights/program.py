"""A model's PyTorch reference as a `torch.export` program in the export folder (`reference.pt2`).

A model from outside the zoo cannot be rebuilt from a name: its code is the user's. Its reference is kept as
the program torch.export traced, raw RGB 0..255 (1, 3, R, R) in and logits out, so that validate, bench,
classify and the apps' golden files run it without importing the user's code again, and without trusting the
folder: `schema.program` checks the archive before `torch.export.load` sees it.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from edgecnn.schema.program import check_program_archive
from edgecnn.util.errors import UsageError

REFERENCE_FILE = "reference.pt2"


def trace(model: nn.Module, resolution: int) -> torch.export.ExportedProgram:
    """The raw-RGB model as a static batch-1 program, or one line saying where torch.export stopped."""
    sample = torch.full((1, 3, resolution, resolution), 128.0)
    try:
        with torch.no_grad(), _quiet_tracer():
            return torch.export.export(model.eval(), (sample,), strict=True)
    except Exception as err:  # torch.export raises many types; each is the user's model failing to trace
        raise UsageError(f"torch.export cannot trace the model: {_first_line(err)}{_hint(err)}") from None


@contextlib.contextmanager
def _quiet_tracer() -> Iterator[None]:
    """torch.export's tracer logs the graph it stopped in; the user gets our one line instead."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0] if lines else type(err).__name__
    where = next((line for line in lines if line.startswith("File ")), "")
    first = first.replace("(from user code:)", "").strip()
    return first[:300] + (f" at {where[5:200]}" if where else "")


def _hint(err: Exception) -> str:
    text = str(err)
    if "data-dependent" in text or "Dynamic control flow" in text or "GuardOnDataDependent" in text:
        return "; make the forward's control flow independent of tensor values (torch.cond, or compute it once)"
    return "; a forward that torch.export can trace takes tensors, calls torch operators, and branches only on shapes"


def save_reference(program: torch.export.ExportedProgram, path: Path) -> None:
    program._example_inputs = None  # they would be pickled; the gate refuses pickles
    torch.export.save(program, str(path))


def load_reference(path: Path) -> nn.Module:
    """The reference program behind the gate's archive check, as a module taking any batch."""
    check_program_archive(path)
    return OneImageAtATime(torch.export.load(str(path)).module())


class OneImageAtATime(nn.Module):
    """A batch-1 program applied to each image of a batch (static shapes keep the program free of guards)."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def train(self, mode: bool = True) -> "OneImageAtATime":
        self.training = mode  # the program computes in eval mode as traced; exported graphs refuse .train()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.program(x[i : i + 1]) for i in range(x.shape[0])])
