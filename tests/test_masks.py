"""Mask codecs: COCO RLE and Ego-Exo4D LZString round trips, and named decode errors."""

from __future__ import annotations

import lzstring
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from omama.masks import MaskDecodeError, decode_rle, encode_lzstring, encode_rle, lzstring_to_rle, rle_area

shapes = st.tuples(st.integers(1, 37), st.integers(1, 41))


@st.composite
def masks(draw):
    """Random masks of odd and even sizes, with empty and full ones drawn often."""
    h, w = draw(shapes)
    kind = draw(st.sampled_from(["random", "empty", "full", "blob"]))
    if kind == "empty":
        return np.zeros((h, w), bool)
    if kind == "full":
        return np.ones((h, w), bool)
    if kind == "blob":
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        m = np.zeros((h, w), bool)
        m[y0 : y0 + draw(st.integers(1, h)), x0 : x0 + draw(st.integers(1, w))] = True
        return m
    return draw(arrays(bool, (h, w)))


@settings(max_examples=150, deadline=None)
@given(masks())
def test_rle_round_trip(mask):
    rle = encode_rle(mask)
    assert rle["size"] == list(mask.shape)
    assert isinstance(rle["counts"], str)
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert rle_area(rle) == mask.sum()


@settings(max_examples=150, deadline=None)
@given(masks())
def test_lzstring_round_trip_matches_the_official_decoding(mask):
    encoded = encode_lzstring(mask)
    h, w = mask.shape
    rle = lzstring_to_rle(encoded, h, w, take="t", obj="o", cam="c", frame=0)
    np.testing.assert_array_equal(decode_rle(rle), mask)
    # the benchmark's own recipe: lzstring decompress, then pycocotools on {size, counts}
    counts = lzstring.LZString().decompressFromEncodedURIComponent(encoded)
    official = mask_utils.decode({"size": [h, w], "counts": counts.encode("ascii")})
    np.testing.assert_array_equal(official.astype(bool), mask)
    assert encode_lzstring(official) == encoded  # byte-exact re-encoding


def _valid() -> str:
    m = np.zeros((20, 30), bool)
    m[3:9, 4:20] = True
    return encode_lzstring(m)


@pytest.mark.parametrize("bad", ["", "garbage%%%", "AAAAAAAAAA", _valid()[:12], _valid()[::-1], 17])
def test_corrupt_lzstring_names_take_object_camera_frame(bad):
    with pytest.raises(MaskDecodeError) as e:
        lzstring_to_rle(bad, 20, 30, take="take-uid-1", obj="swab/stick_0", cam="cam02", frame=60)
    message = str(e.value)
    for part in ("take-uid-1", "swab/stick_0", "cam02", "60"):
        assert part in message


def test_mask_larger_than_declared_size_is_an_error():
    with pytest.raises(MaskDecodeError, match="test tube_0"):
        lzstring_to_rle(_valid(), 10, 10, take="t", obj="test tube_0", cam="aria01_214-1", frame=0)


def test_declared_size_larger_than_the_runs_is_an_error():
    mask = np.zeros((20, 30), bool)
    mask[3:9, 4:20] = True
    encoded = encode_lzstring(mask)
    with pytest.raises(MaskDecodeError, match="take 't1', object 'cup_0', camera 'cam01', frame 30"):
        lzstring_to_rle(encoded, 40, 40, take="t1", obj="cup_0", cam="cam01", frame=30)
