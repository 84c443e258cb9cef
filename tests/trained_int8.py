"""A committed trained model's int8 export job, built as `edgecnn export --weights NAME` builds it, for the
studies and tests that work on its PT2E int8 graph directly."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from edgecnn.data.calibration import CalibrationSet
from edgecnn.data.preprocess import Int8InputEncoding
from edgecnn.formats.base import ExportJob
from edgecnn.weights.recipes import Recipe


@dataclass
class TrainedInt8:
    job: ExportJob
    encoding: Int8InputEncoding  # the int8 file's input encoding
    calibration: CalibrationSet
    recipe: Recipe

    def pytorch(self, images: np.ndarray) -> torch.Tensor:
        """PyTorch's logits for NHWC images, 0..255."""
        with torch.no_grad():
            return self.job.model(torch.from_numpy(images).permute(0, 3, 1, 2).float())

    def normalized(self, images: np.ndarray) -> torch.Tensor:
        """The images as the int8 file's input encoding delivers them to the graph (NHWC)."""
        return torch.from_numpy(self.encoding.decode(self.encoding.encode(images)))


def trained_int8(name: str, work_dir: Optional[Path] = None) -> TrainedInt8:
    """The job of committed checkpoint `name`, calibrated on as many images as its export is."""
    from edgecnn.data.calibration import load_dataset_calibration
    from edgecnn.exporter.pipeline import CALIBRATION_IMAGES
    from edgecnn.weights.reference import prepare_model
    from edgecnn.weights.recipes import RECIPES
    from edgecnn.weights.sources import resolve
    from edgecnn.zoo.registry import get_model_info
    from edgecnn.zoo.spec import VariantSpec

    recipe = RECIPES[name]
    spec = VariantSpec.create(recipe.model, alpha=recipe.alpha, resolution=recipe.resolution,
                              num_classes=recipe.num_classes)
    info = get_model_info(spec.model)
    model, _ = prepare_model(spec, resolve(name, recipe.model, download=False), np.empty((0,)))
    calibration = load_dataset_calibration(recipe.dataset, recipe.resolution, CALIBRATION_IMAGES)
    job = ExportJob(spec.id, spec.resolution, spec.num_classes, model, model.model, info.mean, info.std,
                    calibration.images, [], {}, work_dir)
    return TrainedInt8(job, Int8InputEncoding.for_normalization(info.mean, info.std), calibration, recipe)
