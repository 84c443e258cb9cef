"""The images the harness runs every artifact on: parity photos, and labelled sets for accuracy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgecnn.data.calibration import find_images, load_calibration
from edgecnn.data.datasets import IdxDataset, get_dataset
from edgecnn.data.preprocess import CROP_FRACTION, load_image, preprocess
from edgecnn.schema.manifest import Manifest
from edgecnn.util import console
from edgecnn.util.errors import UsageError
from edgecnn.util.interrupts import checkpoint

DEFAULT_IMAGE_COUNT = 16


def parity_images(manifest: Manifest, count: int, folder: Optional[Path] = None) -> tuple[np.ndarray, str]:
    """The images every artifact is compared on: a user's folder, else the test split of the dataset the
    model was trained on, else the bundled photos."""
    return parity_images_for(manifest.dataset, manifest.resolution, manifest.crop_fraction, count, folder)


def parity_images_for(
    dataset: Optional[str], resolution: int, crop_fraction: float, count: int, folder: Optional[Path] = None
) -> tuple[np.ndarray, str]:
    """`parity_images` of an export before its manifest exists."""
    if folder is None and dataset is not None:
        data = get_dataset(dataset)
        images, _ = data.model_inputs("test", resolution, range(count), crop_fraction, progress=False)
        return images, f"the first {count} images of the " + data.describe("test")
    photos = load_calibration(resolution, count, folder, progress=False, crop_fraction=crop_fraction)
    return photos.images, photos.source


@dataclass
class LabelledSet:
    images: np.ndarray  # (N, R, R, 3) uint8
    targets: np.ndarray  # (N,) class indices
    classes: dict[str, int]  # folder name -> class index
    folder: str


def load_labelled(
    folder: Path, labels: list[str], resolution: int, label_map: Optional[Path] = None, crop: float = CROP_FRACTION
) -> LabelledSet:
    """One subfolder per class, named by a label of the export, by a class index, or through --label-map."""
    if not folder.is_dir():
        raise UsageError(f"labelled image folder not found: {folder}")
    mapping = _read_label_map(label_map, labels) if label_map is not None else {}
    subfolders = sorted(d for d in folder.iterdir() if d.is_dir())
    if not subfolders:
        raise UsageError(f"{folder} has no class subfolders (one folder of images per class)")
    by_name = {label: i for i, label in enumerate(labels)}
    classes, paths, targets = {}, [], []
    for sub in subfolders:
        if sub.name in mapping:
            index = mapping[sub.name]
        elif sub.name in by_name:
            index = by_name[sub.name]
        elif sub.name.isdigit() and int(sub.name) < len(labels):
            index = int(sub.name)
        else:
            raise UsageError(
                f"class folder {sub.name!r} is neither a label of this export nor a class index "
                f"below {len(labels)}; pass --label-map"
            )
        classes[sub.name] = index
        found = find_images(sub)
        paths += found
        targets += [index] * len(found)
    images = []
    for path in console.track(paths, f"labelled images ({len(paths)}) preprocessed"):
        checkpoint()
        images.append(preprocess(load_image(path), resolution, crop))
    return LabelledSet(np.stack(images), np.asarray(targets), classes, str(folder))


def check_dataset_labels(name: str, labels: list[str]) -> IdxDataset:
    dataset = get_dataset(name)
    if list(dataset.classes) != labels:
        raise UsageError(
            f"this export's {len(labels)} labels are not {name}'s classes "
            f"({', '.join(dataset.classes[:3])}, ...): it was not trained on {name}"
        )
    return dataset


def load_dataset_labelled(
    name: str, labels: list[str], resolution: int, crop: float, count: Optional[int] = None
) -> LabelledSet:
    """The test split of a known dataset (all of it, or its first `count` images) as labelled input."""
    dataset = check_dataset_labels(name, labels)
    if count is not None and count < 1:
        raise UsageError(f"--dataset-count must be at least 1, got {count}")
    total = len(dataset.load("test")[1])
    indices = range(min(count, total)) if count is not None else None
    images, targets = dataset.model_inputs("test", resolution, indices, crop)
    return LabelledSet(images, targets, {c: i for i, c in enumerate(dataset.classes)}, dataset.describe("test"))


def _read_label_map(path: Path, labels: list[str]) -> dict[str, int]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"label map not found: {path}") from None
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path} is not a JSON object of folder name -> label or class index") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path} is not a JSON object of folder name -> label or class index")
    mapping = {}
    for name, value in raw.items():
        if isinstance(value, int) and 0 <= value < len(labels):
            mapping[name] = value
        elif isinstance(value, str) and value in labels:
            mapping[name] = labels.index(value)
        else:
            raise UsageError(f"{path}: {name!r} maps to {value!r}, which is not a label or class index of this export")
    return mapping
