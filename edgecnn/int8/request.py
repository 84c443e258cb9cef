"""What an int8 file is made from and held to: plain records, light to import (the format table reads them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from edgecnn.schema.enums import RepairMode
from edgecnn.schema.int8 import Int8Target

if TYPE_CHECKING:
    import numpy as np
    import torch

    from edgecnn.data.calibration import TuningSet


@dataclass
class Int8Request:
    """What an int8 file is held to, and what repair may use: the same for every format."""

    mode: RepairMode = RepairMode.AUTO
    target: Optional[Int8Target] = None  # the bound int8 must meet; None: no bound (nothing to repair)
    target_stated: bool = False  # the user stated the bound (the last remedy, float units, only then)
    # the images candidates are measured on against the bound, uint8 (N, R, R, 3), and their labels if known
    repair_images: Optional["np.ndarray"] = None
    repair_labels: Optional["np.ndarray"] = None
    repair_source: str = ""
    tuning: Optional["TuningSet"] = None  # images fine-tuning may train on; None: not tried

    @property
    def measured_on(self) -> Optional[str]:
        if self.repair_images is None:
            return None
        labelled = "labelled " if self.repair_labels is not None else ""
        return f"{len(self.repair_images)} {labelled}{self.repair_source}"

    @property
    def repairs(self) -> bool:
        return self.mode != RepairMode.NONE and self.target is not None and self.repair_images is not None


@dataclass
class Int8Network:
    """The network an int8 file is made from, and the PyTorch model its logits are held to."""

    model: "torch.nn.Module"  # raw RGB (N, 3, R, R) float 0..255 -> logits
    backbone: "torch.nn.Module"  # the same network on normalised images: what is quantized
    calibration: "np.ndarray"  # uint8 (N, R, R, 3)
    mean: tuple[float, ...]
    std: tuple[float, ...]
