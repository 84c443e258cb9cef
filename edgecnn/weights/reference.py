"""The PyTorch model every artifact is compared with: built for an export, or rebuilt from its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgecnn.data.calibration import load_calibration, load_dataset_calibration
from edgecnn.schema.enums import WeightsKind
from edgecnn.schema.manifest import Manifest, WeightsRecord
from edgecnn.util import console
from edgecnn.util.errors import UsageError
from edgecnn.weights.loading import load_weights, reestimate_batchnorm
from edgecnn.weights.program import load_reference
from edgecnn.weights.sources import WeightsSource, resolve
from edgecnn.zoo.models.layers import RawRGBInput
from edgecnn.zoo.registry import create_model, get_model_info
from edgecnn.zoo.spec import VariantSpec

INIT_SEED = 0


def prepare_model(
    spec: VariantSpec, source: Optional[WeightsSource], calibration: np.ndarray
) -> tuple[torch.nn.Module, WeightsRecord]:
    """The eval-mode PyTorch reference: raw RGB in, logits out, and a record of where its weights came from."""
    info = get_model_info(spec.model)
    torch.manual_seed(INIT_SEED)
    options = source.builder_options if source is not None else {}
    model = create_model(spec.model, alpha=spec.alpha, num_classes=spec.num_classes, **options)
    wrapped = RawRGBInput(model, info.mean, info.std).eval()
    if source is not None:
        load_weights(model, source.read(spec.model), spec.model, source.describe())
        return wrapped, WeightsRecord(
            source.describe(),
            True,
            kind=source.kind,
            name=source.name,
            path=str(source.path.resolve()),
            sha256=source.sha256(),
            builder_options=options,
            imagenet_classes=source.imagenet_classes,
        )
    console.say(
        "[edgecnn] note: no --weights given: the weights are random (untrained); BatchNorm statistics are "
        "re-estimated on the calibration images so that outputs depend on the input"
    )
    reestimate_batchnorm(wrapped, calibration)
    return wrapped, WeightsRecord(
        f"random initialisation (seed {INIT_SEED}), UNTRAINED",
        False,
        batchnorm="statistics re-estimated on the calibration images",
    )


BATCHNORM_FILE = "reference_batchnorm.pt"
_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def save_batchnorm_statistics(model: torch.nn.Module, path: Path) -> None:
    """Every BatchNorm's running statistics of `model`, as a flat name -> tensor file."""
    statistics = {
        f"{name}.{buffer}": getattr(module, buffer).detach().clone()
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        for buffer in _STATISTICS
        if getattr(module, buffer, None) is not None
    }
    torch.save(statistics, path)


def load_batchnorm_statistics(model: torch.nn.Module, path: Path) -> None:
    """Put the statistics `save_batchnorm_statistics` wrote into a freshly built `model` of the same shape."""
    try:
        statistics = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (torch.load raises assorted errors on a damaged file)
        raise UsageError(f"{path} is not readable BatchNorm statistics ({type(err).__name__})") from None
    state = model.state_dict()
    expected = {key for key in state if key.rsplit(".", 1)[-1] in _STATISTICS}
    if not isinstance(statistics, dict) or set(statistics) != expected:
        raise UsageError(f"{path} does not hold this model's BatchNorm statistics")
    for key, value in statistics.items():
        if not isinstance(value, torch.Tensor) or value.shape != state[key].shape:
            raise UsageError(f"{path}: {key} does not fit the model")
    model.load_state_dict({**state, **statistics})


def reference_model(manifest: Manifest, root: Path) -> torch.nn.Module:
    """The raw-RGB PyTorch model the export was made from: rebuilt from what its manifest records, or for a
    model from outside the zoo, its reference program in the export folder `root` (checked by the gate).
    An untrained export's BatchNorm statistics come from its folder when it kept them (exports since
    edgecnn 0.1.0 of December 2026), or else are re-estimated on its calibration images."""
    if manifest.reference is not None:
        return load_reference(root / manifest.reference.path)
    weights = manifest.weights
    spec = VariantSpec.create(
        manifest.model, alpha=manifest.alpha, resolution=manifest.resolution, num_classes=manifest.num_classes
    )
    if weights.trained:
        where = weights.path if weights.kind == WeightsKind.FILE else weights.name
        if weights.kind is None or where is None:
            raise UsageError("the manifest records trained weights but not where they came from")
        source = resolve(where, manifest.model, download=False)
        if not source.path.is_file():
            raise UsageError(f"the weights this export was made from are gone: {source.path}")
        if source.sha256() != weights.sha256:
            raise UsageError(f"{source.path} has changed since export: its sha256 no longer matches the manifest")
        model, _ = prepare_model(spec, source, np.empty((0,)))
        return model
    if manifest.batchnorm_statistics is not None:
        torch.manual_seed(INIT_SEED)  # the same random weights as at export
        info = get_model_info(spec.model)
        network = create_model(spec.model, alpha=spec.alpha, num_classes=spec.num_classes, **weights.builder_options)
        wrapped = RawRGBInput(network, info.mean, info.std).eval()
        load_batchnorm_statistics(wrapped, root / manifest.batchnorm_statistics.path)
        return wrapped
    model, _ = prepare_model(
        spec,
        None,
        calibration_images(
            manifest,
            "the calibration images this untrained export re-estimated BatchNorm on have changed; "
            "its PyTorch reference cannot be rebuilt",
        ),
    )
    return model


def calibration_images(manifest: Manifest, changed: str = "") -> np.ndarray:
    """The uint8 calibration images an export was made with, loaded again and checked by their sha256."""
    recorded = manifest.calibration
    if recorded.dataset is not None:
        calibration = load_dataset_calibration(recorded.dataset.name, manifest.resolution, recorded.count)
    else:
        folder = Path(recorded.folder) if recorded.folder else None
        calibration = load_calibration(
            manifest.resolution, recorded.count, folder, progress=False, crop_fraction=manifest.crop_fraction
        )
    if calibration.sha256 != recorded.sha256:
        raise UsageError(changed or "the calibration images this export was made with have changed since")
    return calibration.images
