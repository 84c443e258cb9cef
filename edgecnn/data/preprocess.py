"""From a decoded RGB image to the tensor a model takes: one rule, in integers, so that every language
computes the same bytes at every size.

Python (here), Java (the Android core) and JavaScript (the web page) implement it, and a property test holds
the three to identical bytes. Floating-point sums in different orders or with fused multiply-adds differ in the
last bit, and at 224 px that moved a pixel across a rounding boundary; integers cannot differ.

1. Crop the central square of side S = max(1, floor(shorter side x crop_fraction)), one float64 product;
   offsets floor((dimension - S) / 2).
2. Resize S x S to R x R with a triangle (bilinear) filter whose support widens with the downscale factor
   (PIL's BILINEAR), sampled at pixel centres. With M = max(S, R), output o takes input i with the integer
   weight u = max(0, 2M - |(2i + 1) R - (2o + 1) S|) (the triangle in units of 1 / 2R), and its
   coefficient is q = round_half_up(u x 2^20 / sum_i u), computed in integers.
3. Rows first, then columns, both as integer sums: N = sum_x q(p, x) sum_i q(o, i) pixel(i, x). The value is
   clip(floor((N + 2^39) / 2^40), 0, 255): one rounding, half up. Every product and sum stays below 2^53,
   so a float64 with an integer value (JavaScript's numbers, BLAS) carries it exactly.
   Normalisation (mean/std) is folded into the float graphs (ONNX, float TFLite, Core ML), so apps feed
   raw RGB to them.
4. The int8 graphs take the normalised image already quantized to int8: the app maps each
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


COEFFICIENT_BITS = 20  # a coefficient's fixed point; two passes give 2^40 in the final sum


def resize_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) int64 fixed-point triangle-filter coefficients (rule step 2), each row summing to
    about 2^20."""
    longer = max(in_size, out_size)
    inputs = 2 * np.arange(in_size, dtype=np.int64) + 1
    outputs = 2 * np.arange(out_size, dtype=np.int64) + 1
    distance = np.abs(inputs[None, :] * out_size - outputs[:, None] * in_size)
    weights = np.maximum(0, 2 * longer - distance)
    totals = weights.sum(axis=1, keepdims=True)
    return (weights * 2 ** (COEFFICIENT_BITS + 1) + totals) // (2 * totals)


def center_crop_box(width: int, height: int, crop_fraction: float = CROP_FRACTION) -> tuple[int, int, int]:
    side = max(1, int(np.floor(min(width, height) * crop_fraction)))
    return (width - side) // 2, (height - side) // 2, side


def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The coefficients as bands: (out_size, T) input indices and float64 coefficients, zero past a row's end."""
    coefficients = resize_coefficients(in_size, out_size)
    nonzero = coefficients > 0
    first = nonzero.argmax(axis=1)
    width = int((in_size - nonzero[:, ::-1].argmax(axis=1) - first).max())
    index = np.minimum(first[:, None] + np.arange(width)[None, :], in_size - 1)
    band = np.take_along_axis(coefficients, index, axis=1)
    band[first[:, None] + np.arange(width)[None, :] >= in_size] = 0
    return index, band.astype(np.float64)


def resize_square(pixels: np.ndarray, resolution: int) -> np.ndarray:
    """Resize an (S, S, 3) array to (resolution, resolution, 3) uint8 by the rule above."""
    index, band = _taps(pixels.shape[0], resolution)
    values = pixels.astype(np.float64)
    # float64 sums of integers below 2^53 are exact in any order: band by band, the integer sums of the rule
    vertical = sum(band[:, t, None, None] * values[index[:, t]] for t in range(band.shape[1]))  # (R, S, 3)
    index, band = _taps(pixels.shape[1], resolution)
    sums = sum(band[None, :, t, None] * vertical[:, index[:, t]] for t in range(band.shape[1]))  # (R, R, 3)
    half, unit = 2.0 ** (2 * COEFFICIENT_BITS - 1), 2.0 ** (2 * COEFFICIENT_BITS)
    return np.clip(np.floor((sums + half) / unit), 0, 255).astype(np.uint8)


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
