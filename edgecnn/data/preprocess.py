"""From a decoded RGB image to the tensor a model takes: one rule, written down exactly.

An app on a phone must compute the same input as Python, so the rule is simple enough to re-implement
bit for bit (the Android core does, against golden files):
1. Crop the central square whose side is `crop_fraction` x the image's shorter side
   (side = floor(shorter x crop_fraction), offsets = floor((dimension - side) / 2)).
2. Resize that square to resolution x resolution with a triangle (bilinear) filter whose support widens
   with the downscale factor, so that large photos are averaged rather than aliased (PIL's BILINEAR
   filter); sample positions at pixel centres; weights normalised per output pixel; computed in float64.
3. Round to the nearest integer (ties to even) and clip to 0..255: the model input is these RGB values.
   Normalisation (mean/std) is folded into the float graphs (ONNX, float TFLite, Core ML), so apps feed
   raw RGB to them.
4. The int8 TFLite graph takes the normalised image already quantized to int8: the app maps each
   channel's 0..255 value through a 256-entry table (`Int8InputEncoding`, written into the manifest).
   That costs an app what converting raw pixels to int8 costs anyway, and keeps the normalisation out
   of the int8 graph, where XNNPACK would spend a full-resolution per-channel op on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgecnn.schema.inputs import CROP_FRACTION, InputEncoding
from edgecnn.util.errors import UsageError


@dataclass(frozen=True)
class Int8InputEncoding:
    """Raw RGB 0..255 -> int8 codes of the normalised image ((x / 255 - mean) / std), one table per channel.

    The quantization grid is fixed by the normalisation alone, not by calibration: it spans exactly the
    values the 256 pixel levels of the three channels can take, so no pixel is ever clipped.
    """

    scale: float
    zero_point: int
    table: np.ndarray  # (3, 256) int8: table[c, v] is the code for value v in channel c

    @classmethod
    def for_normalization(cls, mean: tuple[float, ...], std: tuple[float, ...]) -> "Int8InputEncoding":
        values = cls.normalized_levels(mean, std)
        low, high = float(values.min()), float(values.max())
        scale = float(np.float32((high - low) / 255.0))  # float32: the value the .tflite file stores
        zero_point = int(np.clip(np.rint(-128.0 - low / scale), -128, 127))
        table = np.clip(np.rint(values / scale) + zero_point, -128, 127).astype(np.int8)
        return cls(scale, zero_point, table)

    @classmethod
    def from_record(cls, record: InputEncoding) -> "Int8InputEncoding":
        table = np.asarray(record.lookup_table, dtype=np.int8)
        if table.shape != (3, 256):
            raise ValueError(f"an int8 input lookup table has shape (3, 256), not {table.shape}")
        return cls(float(record.scale), int(record.zero_point), table)

    @staticmethod
    def normalized_levels(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
        """(3, 256) float64: the normalised value of every pixel level in every channel."""
        levels = np.arange(256, dtype=np.float64) / 255.0
        return (levels[None, :] - np.asarray(mean, np.float64)[:, None]) / np.asarray(std, np.float64)[:, None]

    def encode(self, images: np.ndarray) -> np.ndarray:
        """(..., 3) uint8 RGB -> (..., 3) int8 codes."""
        return np.stack([self.table[c][images[..., c]] for c in range(3)], axis=-1)

    def encode_planar(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) int8 codes, contiguous: the lookups write the planes
        directly instead of interleaving them first and transposing after (one copy fewer per call)."""
        # the lookups follow the memory order of `images`, which need not be C order (a crop or a transpose)
        return np.ascontiguousarray(np.stack([self.table[c][images[..., c]] for c in range(3)], axis=1))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return (codes.astype(np.float32) - self.zero_point) * np.float32(self.scale)

    def to_record(self) -> InputEncoding:
        return InputEncoding(
            self.scale,
            self.zero_point,
            "code = clip(round(((v / 255 - mean[c]) / std[c]) / scale) + zero_point, -128, 127)",
            self.table.tolist(),
        )


def _resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) matrix of triangle-filter weights, rows summing to 1."""
    scale = in_size / out_size
    support = max(scale, 1.0)
    centres = (np.arange(out_size) + 0.5) * scale
    positions = np.arange(in_size) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(positions[None, :] - centres[:, None]) / support)
    return weights / weights.sum(axis=1, keepdims=True)


def center_crop_box(width: int, height: int, crop_fraction: float = CROP_FRACTION) -> tuple[int, int, int]:
    side = max(1, int(np.floor(min(width, height) * crop_fraction)))
    return (width - side) // 2, (height - side) // 2, side


def resize_square(pixels: np.ndarray, resolution: int) -> np.ndarray:
    """Resize an (S, S, 3) array to (resolution, resolution, 3) uint8 by the rule above."""
    rows = _resize_weights(pixels.shape[0], resolution)
    cols = _resize_weights(pixels.shape[1], resolution)
    vertical = np.tensordot(rows, pixels.astype(np.float64), axes=(1, 0))  # (R, S, 3)
    out = np.tensordot(cols, vertical, axes=(1, 1)).transpose(1, 0, 2)  # (R, R, 3)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def preprocess(
    image: Union[Image.Image, np.ndarray], resolution: int, crop_fraction: float = CROP_FRACTION
) -> np.ndarray:
    """A decoded image -> (resolution, resolution, 3) uint8 RGB, the model's input before layout."""
    pixels = image if isinstance(image, np.ndarray) else to_rgb_array(image)
    x, y, side = center_crop_box(pixels.shape[1], pixels.shape[0], crop_fraction)
    return resize_square(pixels[y : y + side, x : x + side], resolution)


def load_image(path: Union[str, Path]) -> Image.Image:
    """Open and decode an image file fully, or raise UsageError naming it."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UsageError(f"cannot read image {path}: {err.__class__.__name__}") from None
