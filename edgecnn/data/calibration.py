"""Calibration images: natural photos that ship with scikit-image, or a user's folder.

The requested count is reached deterministically: after each image once (central crop), further samples
are random square crops (35-100% of the shorter side) and horizontal flips drawn from a fixed seed.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from edgecnn.data.photos import SKIMAGE
from edgecnn.data.preprocess import CROP_FRACTION, load_image, preprocess, resize_square, to_rgb_array
from edgecnn.schema.inputs import CalibrationRecord, DatasetSample
from edgecnn.util import console
from edgecnn.util.errors import UsageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
SEED = 20240601


@dataclass
class CalibrationSet:
    images: np.ndarray  # (N, R, R, 3) uint8 RGB, the models' raw input
    source: str
    files: list[str] = field(default_factory=list)
    folder: Optional[str] = None  # the user's folder, absolute; None for the bundled photos
    dataset: Optional[DatasetSample] = None  # drawn from a dataset: its name, split and the indices taken
    skipped: list[str] = field(default_factory=list)  # files in the folder that did not decode

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.images.tobytes()).hexdigest()

    def provenance(self) -> CalibrationRecord:
        return CalibrationRecord(
            source=self.source,
            count=int(len(self.images)),
            resolution=int(self.images.shape[1]),
            seed=SEED,
            augmentation="none"
            if self.dataset
            else "central crop first, then seeded random square crops (35-100%) and flips",
            sha256=self.sha256,
            folder=self.folder,
            files=self.files,
            dataset=self.dataset,
            skipped=self.skipped,
        )


def skimage_photo_paths() -> list[Path]:
    return SKIMAGE.paths()


def find_images(folder: Path) -> list[Path]:
    if not folder.exists():
        raise UsageError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UsageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return paths


def _augmented(pixels: np.ndarray, resolution: int, rng: np.random.Generator) -> np.ndarray:
    height, width = pixels.shape[:2]
    side = max(1, int(min(height, width) * rng.uniform(0.35, 1.0)))
    y = int(rng.integers(0, height - side + 1))
    x = int(rng.integers(0, width - side + 1))
    crop = pixels[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return resize_square(crop, resolution)


def load_calibration(
    resolution: int,
    count: int,
    folder: Optional[Path] = None,
    progress: bool = True,
    crop_fraction: float = CROP_FRACTION,
) -> CalibrationSet:
    if count < 1:
        raise UsageError(f"calibration count must be at least 1, got {count}")
    paths = find_images(folder) if folder is not None else skimage_photo_paths()
    root = folder if folder is not None else paths[0].parent
    decoded, readable, skipped = [], [], []
    for path in paths:  # one unreadable file in a folder of photos is skipped, named, and recorded
        try:
            decoded.append(to_rgb_array(load_image(path)))
            readable.append(path)
        except UsageError as err:
            skipped.append(str(path.relative_to(root)))
            console.say(f"[edgecnn] note: calibration image skipped: {err}")
    if not decoded:
        raise UsageError(f"no readable image in {folder}: all {len(paths)} failed to decode ({skipped[0]}, ...)")
    rng = np.random.default_rng(SEED)
    samples = []
    with (
        console.step(f"calibration images ({count})", total=count)
        if progress
        else nullcontext(lambda n=1: None) as advance
    ):
        for i in range(count):
            pixels = decoded[i % len(decoded)]
            samples.append(
                preprocess(pixels, resolution, crop_fraction)
                if i < len(decoded)
                else _augmented(pixels, resolution, rng)
            )
            advance()
    source = str(folder) if folder is not None else "scikit-image bundled photos (public domain / CC0)"
    return CalibrationSet(
        np.stack(samples),
        source,
        [str(p.relative_to(root)) for p in readable],
        str(folder.resolve()) if folder is not None else None,
        skipped=skipped,
    )


def load_dataset_calibration(name: str, resolution: int, count: int) -> CalibrationSet:
    """A seeded sample of `count` images from a dataset's train split (what the model was trained on)."""
    from edgecnn.data.datasets import get_dataset

    dataset = get_dataset(name)
    total = len(dataset.load("train")[1])
    if count > total:
        raise UsageError(f"--calib-count {count} is more than the {total} images of {name}'s train split")
    indices = np.sort(np.random.default_rng(SEED).choice(total, count, replace=False))
    images, _ = dataset.model_inputs("train", resolution, indices, label=f"calibration images ({count} of {name})")
    return CalibrationSet(images, dataset.describe("train"), dataset=DatasetSample(name, "train", indices.tolist()))


# A bound is met on these images, and must then hold on the user's: at agreement 0.99 the sampling error
# of the measured fraction is 0.31 pt on 1,000 images and 0.14 pt on 5,000 (docs/int8.md).
REPAIR_IMAGES = 5000


def load_repair_set(
    name: str, resolution: int, calibration_indices: list[int], count: int = REPAIR_IMAGES
) -> tuple[np.ndarray, np.ndarray, str]:
    """Labelled images of a dataset's train split that calibration did not see, for int8's repair to be
    measured on: images, labels and what they are. The test split is left to validation."""
    from edgecnn.data.datasets import get_dataset

    dataset = get_dataset(name)
    indices = _repair_indices(len(dataset.load("train")[1]), calibration_indices, count)
    images, labels = dataset.model_inputs(
        "train", resolution, indices, label=f"int8 repair images ({len(indices)} of {name}, not calibration's)"
    )
    return images, labels, f"images of {name}'s train split that calibration did not use"


def _repair_indices(total: int, calibration_indices: list[int], count: int) -> np.ndarray:
    rest = np.setdiff1d(np.arange(total), np.asarray(calibration_indices, dtype=np.int64))
    return np.sort(np.random.default_rng(SEED + 1).choice(rest, min(count, len(rest)), replace=False))


# Fine-tuning trains on these and is judged on the repair images, so the two never share an image.
TUNING_IMAGES = 10_000


@dataclass(frozen=True)
class TuningSet:
    """Where int8-aware fine-tuning takes its images: a dataset's train split, less the calibration and
    repair images. Loaded only by the remedy that needs them (10,000 images of 224 px are 1.5 GB)."""

    dataset: str
    resolution: int
    calibration_indices: tuple[int, ...]
    count: int = TUNING_IMAGES

    def load(self) -> tuple[np.ndarray, str]:
        """Unlabelled images (uint8, N x R x R x 3), and what they are."""
        from edgecnn.data.datasets import get_dataset

        dataset = get_dataset(self.dataset)
        total = len(dataset.load("train")[1])
        repair = _repair_indices(total, list(self.calibration_indices), REPAIR_IMAGES)
        rest = np.setdiff1d(
            np.setdiff1d(np.arange(total), np.asarray(self.calibration_indices, dtype=np.int64)), repair
        )
        indices = np.sort(np.random.default_rng(SEED + 2).choice(rest, min(self.count, len(rest)), replace=False))
        images, _ = dataset.model_inputs(
            "train", self.resolution, indices, label=f"int8 fine-tuning images ({len(indices)} of {self.dataset})"
        )
        return images, f"{len(indices)} images of {self.dataset}'s train split used by neither calibration nor repair"
