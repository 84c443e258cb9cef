"""Weights for an export: a user's state_dict, or random init with BatchNorm statistics re-estimated."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgecnn.util import console
from edgecnn.util.errors import UsageError
from edgecnn.util.interrupts import checkpoint

MAX_LISTED = 4


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely (weights_only): a state_dict, or a dict holding one under
    'state_dict' or 'model'."""
    if not path.exists():
        raise UsageError(f"weights file not found: {path}")
    if not path.is_file():
        raise UsageError(f"weights path is not a file: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UsageError(_not_weights_only(path, str(err))) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise UsageError(f"{path} is not a readable PyTorch checkpoint ({err.__class__.__name__})") from None
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise UsageError(f"{path} holds no state_dict (a mapping of names to tensors)")
    return checkpoint


def _not_weights_only(path: Path, message: str) -> str:
    """One line for a checkpoint that needs unpickling: what it holds, and how to save weights instead."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    with open(path, "rb") as file:
        pickled = file.read(1) == b"\x80"  # a pickle's PROTO opcode; a text file gives the same error as objects
    if found is None and not pickled:
        return f"{path} is not a PyTorch checkpoint (neither a torch.save archive nor a pickle)"
    holds = f"a pickled {found.group(1)}" if found else "pickled Python objects"
    return (
        f"{path} holds {holds}, not just tensors; edgecnn loads weights only and never unpickles code: save the "
        "weights with torch.save(model.state_dict(), path)"
    )


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], model_name: str, origin: str) -> None:
    """Load strictly; on mismatch name the first few differences (`origin` names the checkpoint)."""
    ours = model.state_dict()
    # checkpoints older than BatchNorm's step counter (torchvision's DenseNet, for one) lack it; it never
    # affects inference, and PyTorch's own loader fills it in for them too
    state = {**{k: v for k, v in ours.items() if k.endswith(".num_batches_tracked")}, **state}
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in ours.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape (file vs model)", wrong_shape)):
            if items:
                more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
                parts.append(f"{label}: {', '.join(items[:MAX_LISTED])}{more}")
        raise UsageError(f"{origin} does not fit {model_name}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def reestimate_batchnorm(model: nn.Module, images: np.ndarray, batch_size: int = 16) -> None:
    """Recompute every BatchNorm's running statistics on `images` (raw RGB, through the wrapper).

    A randomly initialised net has running mean 0 / variance 1 everywhere, so activations shrink with
    depth and every input gives the same logits; with statistics from real images the outputs depend on
    the input, which makes parity checks meaningful. Only the norms switch to training mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    if len(images) < 2:
        raise UsageError("re-estimating BatchNorm statistics needs at least 2 calibration images")
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all batches
        m.train()
    chunks = np.array_split(images, max(1, len(images) // batch_size))
    with torch.no_grad():
        for chunk in console.track(chunks, f"BatchNorm statistics re-estimated ({len(images)} images)"):
            checkpoint()
            model(torch.from_numpy(chunk).permute(0, 3, 1, 2).float())
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
