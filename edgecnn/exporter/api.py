"""`edgecnn.export(model, ...)`: the Python way in for any PyTorch image classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

from torch import nn

from edgecnn.exporter.pipeline import CALIBRATION_IMAGES, ExportRequest, ExportResult, run_export
from edgecnn.formats import FORMATS, parse_formats
from edgecnn.harness.latency import LatencyOptions
from edgecnn.schema.enums import RepairMode
from edgecnn.schema.int8 import Int8Target
from edgecnn.util.errors import UsageError
from edgecnn.weights.user_model import IMAGENET_MEAN, IMAGENET_STD, from_module


def export(
    model: nn.Module,
    *,
    resolution: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    labels: Optional[Sequence[str]] = None,
    formats: Union[str, Sequence[str]] = tuple(FORMATS),
    calib: Optional[Union[str, Path]] = None,
    calib_count: int = CALIBRATION_IMAGES,
    out: Union[str, Path] = "export",
    name: Optional[str] = None,
    int8_repair: Union[str, RepairMode] = RepairMode.AUTO,
    int8_target: Optional[str] = None,
    validate: bool = True,
    latency: bool = True,
    force: bool = False,
) -> ExportResult:
    """Export `model`, an `nn.Module` mapping a normalised image batch (N, 3, R, R) to logits, as
    `edgecnn export --model MODULE:ATTR` does: every format, checked against the model, into `out/<name>`.

    `mean` and `std` are the normalisation the model was trained with (ImageNet's by default); the exported
    files take raw RGB 0..255 (the int8 files its int8 codes) and carry it. `name` defaults to the class
    name and the resolution. `int8_target` is a bound such as "cosine=0.99" or "agreement=0.98". Returns
    the typed result: the manifest, the folder, and the validation report when `validate` (timed on this
    machine unless `latency` is False)."""
    user = from_module(
        model,
        resolution=resolution,
        name=name,
        mean=mean,
        std=std,
        labels=list(labels) if labels is not None else None,
    )
    try:
        target = Int8Target.parse(int8_target) if int8_target is not None else None
    except ValueError as err:
        raise UsageError(str(err)) from None
    request = ExportRequest(
        user.spec,
        parse_formats(formats if isinstance(formats, str) else ",".join(formats)),
        calib_dir=Path(calib) if calib is not None else None,
        calib_count=calib_count,
        out=Path(out) / user.spec.id,
        force=force,
        validate=validate,
        latency=LatencyOptions() if latency else None,
        int8_repair=RepairMode(int8_repair),
        int8_target=target,
        user_model=user,
    )
    return run_export(request)
