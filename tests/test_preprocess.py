"""The preprocessing contract an app re-implements: crop/resize rule and the int8 input encoding."""
import dataclasses
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edgecnn.data.preprocess import Int8InputEncoding, center_crop_box, preprocess, resize_coefficients

pytestmark = pytest.mark.quick  # needs no converter: `make test-quick`

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize("mean, std", [IMAGENET, ((0.5,) * 3, (0.5,) * 3)])
def test_int8_encoding_spans_every_pixel_level_without_clipping(mean, std):
    encoding = Int8InputEncoding.for_normalization(mean, std)
    exact = Int8InputEncoding.normalized_levels(mean, std)
    error = np.abs(encoding.decode(encoding.table) - exact)
    assert error.max() <= 0.5 * encoding.scale * (1 + 1e-6)  # rounding only: nothing clipped
    assert encoding.table.min() == -128 and encoding.table.max() >= 126  # the whole int8 range is used
    assert np.all(np.diff(encoding.table.astype(int), axis=1) >= 0)  # monotonic in the pixel value


def test_int8_encoding_follows_its_written_formula_and_survives_the_manifest():
    mean, std = IMAGENET
    encoding = Int8InputEncoding.for_normalization(mean, std)
    record = encoding.to_record()
    v = np.arange(256)
    for c in range(3):
        formula = np.clip(np.rint(((v / 255 - mean[c]) / std[c]) / record.scale) + record.zero_point, -128, 127)
        assert record.lookup_table[c] == formula.astype(int).tolist()
    again = Int8InputEncoding.from_record(record)
    image = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    codes = again.encode(image)
    assert codes.dtype == np.int8 and codes[1, 2, 0] == encoding.table[0, image[1, 2, 0]]
    with pytest.raises(ValueError, match=r"\(3, 256\)"):
        Int8InputEncoding.from_record(dataclasses.replace(record, lookup_table=record.lookup_table[:2]))


def test_central_crop_and_resize_rule():
    assert center_crop_box(640, 480) == (110, 30, 420)
    flat = Image.new("RGB", (300, 200), (10, 200, 77))
    out = preprocess(flat, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and (out == [10, 200, 77]).all()


def test_planar_int8_encoding_is_the_interleaved_one_transposed():
    encoding = Int8InputEncoding.for_normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    for given in (images, np.ascontiguousarray(images.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)):  # any order
        planar = encoding.encode_planar(given)
        assert planar.shape == (2, 3, 5, 7) and planar.flags["C_CONTIGUOUS"]
        assert np.array_equal(planar, encoding.encode(images).transpose(0, 3, 1, 2))


@settings(max_examples=60, deadline=None)
@given(height=st.integers(17, 400), width=st.integers(17, 400), resolution=st.integers(32, 320),
       seed=st.integers(0, 2**32 - 1))
def test_the_integer_resize_is_within_one_level_of_pils_bilinear(height, width, resolution, seed):
    """The integer rule keeps PIL's filter: PIL rounds between its two passes, the rule once at the end."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    x, y, side = center_crop_box(width, height)
    pil = np.asarray(Image.fromarray(pixels).crop((x, y, x + side, y + side)).resize((resolution,) * 2,
                                                                                      Image.BILINEAR))
    assert np.abs(preprocess(pixels, resolution).astype(int) - pil).max() <= 1


def test_resize_coefficients_are_the_triangle_in_fixed_point():
    # 4 -> 2: support 2, centres 1 and 3: weights 0.75 0.75 0.25 0, i.e. 3/7 3/7 1/7 of 2^20, rounded half up
    assert resize_coefficients(4, 2).tolist() == [[449390, 449390, 149797, 0], [0, 149797, 449390, 449390]]
    assert resize_coefficients(2, 4).tolist()[1] == [786432, 262144]  # upscaling: support 1
    # one rounding, half up: 2.5 -> 3, 1.5 -> 2, 3.5 -> 4
    two_by_two = np.array([[[0, 1, 3], [5, 2, 4]], [[5, 2, 4], [0, 1, 3]]], np.uint8)
    assert preprocess(two_by_two, 1, 1.0).tolist() == [[[3, 2, 4]]]
