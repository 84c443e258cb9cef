"""Labelled datasets the harness reads directly (no image folder needed): Fashion-MNIST from Debian.

Debian's `dataset-fashion-mnist` (MIT) installs the original IDX files under
/usr/share/datasets/fashion-mnist; `$EDGECNN_FASHION_MNIST_DIR` points elsewhere (a copy on macOS, say).
Images are 28x28 grayscale; they enter the pipeline as RGB (the gray value in all three channels)
and go through the same preprocessing rule as any photo, with the crop fraction the model was trained with.
"""

from __future__ import annotations

import gzip
import os
import struct
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgecnn.data.preprocess import preprocess
from edgecnn.util import console
from edgecnn.util.errors import UsageError

IDX_UBYTE = 0x08


@dataclass(frozen=True)
class IdxDataset:
    name: str
    classes: tuple[str, ...]
    default_folder: Path
    folder_variable: str
    apt_package: str
    crop_fraction: float  # the whole frame: these images are already tightly framed
    splits: dict[str, tuple[str, str]]  # split -> (images file, labels file)

    @property
    def folder(self) -> Path:
        return Path(os.environ.get(self.folder_variable) or self.default_folder)

    def load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(N, H, W) uint8 images and (N,) int64 labels of one split."""
        if split not in self.splits:
            raise UsageError(f"{self.name} has splits {', '.join(self.splits)}, not {split!r}")
        image_file, label_file = (self.folder / f for f in self.splits[split])
        for path in (image_file, label_file):
            if not path.is_file():
                raise UsageError(
                    f"{self.name}: {path} not found; apt-get install {self.apt_package} "
                    f"(make setup does), or set {self.folder_variable} to a folder holding the IDX files"
                )
        images, labels = read_idx(image_file), read_idx(label_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UsageError(f"{self.name} {split}: images {images.shape} and labels {labels.shape} do not pair up")
        if labels.max() >= len(self.classes):
            raise UsageError(f"{self.name} {split}: label {labels.max()} outside its {len(self.classes)} classes")
        return images, labels.astype(np.int64)

    def model_inputs(
        self,
        split: str,
        resolution: int,
        indices: Sequence[int] | np.ndarray | None = None,
        crop_fraction: float | None = None,
        progress: bool = True,
        label: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Images of a split (all, or those at `indices`) as (N, R, R, 3) uint8 model input, and their labels."""
        images, labels = self.load(split)
        if indices is not None:
            chosen = np.asarray(indices, dtype=np.int64)
            if len(chosen) and (chosen.min() < 0 or chosen.max() >= len(images)):
                raise UsageError(f"{self.name} {split} has {len(images)} images")
            images, labels = images[chosen], labels[chosen]
        fraction = self.crop_fraction if crop_fraction is None else crop_fraction
        out = np.empty((len(images), resolution, resolution, 3), np.uint8)
        label = label or f"{self.name} {split}: {len(images)} images preprocessed"
        with console.step(label, total=len(images)) if progress else nullcontext(lambda n=1: None) as advance:
            for i, gray in enumerate(images):
                out[i] = preprocess(np.repeat(gray[:, :, None], 3, axis=2), resolution, fraction)
                advance()
        return out, labels

    def describe(self, split: str) -> str:
        return f"{self.name} {split} split ({self.folder}, Debian {self.apt_package})"


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) of unsigned bytes: magic 0x0000 08 <dims>, big-endian sizes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError) as err:
        raise UsageError(f"cannot read {path}: {err.__class__.__name__}") from None
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != IDX_UBYTE:
        raise UsageError(f"{path} is not an IDX file of unsigned bytes")
    dims = data[3]
    header = 4 + 4 * dims
    shape = struct.unpack(f">{dims}I", data[4:header])
    if len(data) != header + int(np.prod(shape)):
        raise UsageError(f"{path}: {len(data) - header} bytes of data for shape {shape}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


FASHION_MNIST = IdxDataset(
    name="fashion-mnist",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    default_folder=Path("/usr/share/datasets/fashion-mnist"),
    folder_variable="EDGECNN_FASHION_MNIST_DIR",
    apt_package="dataset-fashion-mnist",
    crop_fraction=1.0,
    splits={
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    },
)

DATASETS = {FASHION_MNIST.name: FASHION_MNIST}


def get_dataset(name: str) -> IdxDataset:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]
