"""The network an int8 file was made from: what both int8 inspectors (TFLite, .pte) compare the file with."""

from __future__ import annotations

from typing import Optional

import numpy as np
from torch import nn

from edgecnn.data.preprocess import Int8InputEncoding
from edgecnn.int8.remedies import apply_remedies
from edgecnn.schema.artifacts import ArtifactRecord
from edgecnn.schema.details import Int8FileFacts
from edgecnn.schema.manifest import Manifest
from edgecnn.util.errors import UsageError
from edgecnn.weights.reference import calibration_images


def made_from(
    record: ArtifactRecord, manifest: Manifest, backbone: nn.Module, calibration: Optional[np.ndarray] = None
) -> tuple[Int8InputEncoding, nn.Module]:
    """An int8 file's input encoding, and the network it was made from: `backbone`, or its equalised,
    bias-corrected copy where repair kept those remedies (`calibration`: the export's, if already loaded)."""
    if record.input.encoding is None:
        raise UsageError(f"{record.path} takes no int8 codes: not a full-integer model")
    repair = record.details.repair if isinstance(record.details, Int8FileFacts) else None
    if repair is not None and repair.applied:
        calibration = calibration_images(manifest) if calibration is None else calibration
        backbone, _ = apply_remedies(backbone, calibration, tuple(manifest.mean), tuple(manifest.std))
    return Int8InputEncoding.from_record(record.input.encoding), backbone
