"""What an app must do to a decoded RGB image so that it computes the tensor the model was checked on, and
where an export's calibration images came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

CROP_FRACTION = 0.875  # 224 of 256: the usual ImageNet evaluation crop


@dataclass(frozen=True)
class Preprocessing:
    """The one input rule, as the manifest records it (edgecnn.data.preprocess implements it)."""

    resolution: int
    crop: str = "central square, side = floor(shorter side x crop_fraction)"
    crop_fraction: float = CROP_FRACTION
    resize: str = (
        "triangle filter, support scaled by the downscale factor, pixel-centre sampling; "
        "20-bit integer coefficients, rows then columns summed in integers"
    )
    rounding: str = "once, half up (floor((sum + 2^39) / 2^40)), clip to 0..255"
    color: str = "RGB"
    value_range: str = "0..255 (normalisation folded into the graph)"


@dataclass(frozen=True)
class InputEncoding:
    """How an int8 file's input codes come from pixels: one lookup table per channel (see Int8InputEncoding)."""

    scale: float
    zero_point: int
    formula: str
    lookup_table: list[list[int]]  # [channel][0..255] -> int8 code


@dataclass(frozen=True)
class DatasetSample:
    """Calibration images drawn from a dataset: which split, and the indices taken."""

    name: str
    split: str
    indices: list[int]


@dataclass(frozen=True)
class CalibrationRecord:
    """Where an export's calibration images came from, enough to load the same ones again (checked by sha256)."""

    source: str
    count: int
    resolution: int
    seed: int
    augmentation: str
    sha256: str
    folder: Optional[str] = None  # the user's folder, absolute; None for the bundled photos or a dataset
    files: list[str] = field(default_factory=list)
    dataset: Optional[DatasetSample] = None
    skipped: list[str] = field(default_factory=list)  # files of the folder that did not decode, left out
