"""Shared kernel helpers (onnxrt.ops._common)."""

from __future__ import annotations

import numpy as np
import pytest

import threading

from onnxrt.ops._common import (RowVector, contiguous_copy, leaky_relu_into, relu_into, strided_view,
                                thread_scratch_kept)


@pytest.mark.parametrize("make", [
    lambda a: a.T,                 # a transposed weight, laid out tile by tile
    lambda a: a[:, ::3],           # strided columns
    lambda a: a[:40, :50].T,       # small: one plain copy
])
def test_contiguous_copy_equals_its_input(make):
    base = np.random.default_rng(0).standard_normal((600, 900)).astype(np.float32)
    view = make(base)
    copy = contiguous_copy(view)
    assert copy.flags.c_contiguous and not np.shares_memory(copy, base)
    np.testing.assert_array_equal(copy, view)


def test_contiguous_copy_returns_a_contiguous_array_itself():
    a = np.ones((3, 4), np.float32)
    assert contiguous_copy(a) is a


def test_relu_into_matches_maximum_in_every_layout():
    rng = np.random.default_rng(0)
    big = rng.standard_normal((96, 20000)).astype(np.float32)
    big[3, 5] = np.nan
    for x in (big, big[:, :4096], big.T[:, :50], big[:7, :16384], big[0, :5], np.asarray(np.float32(-2))):
        expected = np.maximum(x, 0)
        np.testing.assert_array_equal(relu_into(x), expected)
        y = x.copy()
        assert relu_into(y, y) is y
        np.testing.assert_array_equal(y, expected)


def test_row_vector_adds_to_contiguous_and_strided_rows():
    rng = np.random.default_rng(1)
    vec = rng.standard_normal(96).astype(np.float32)
    row = RowVector(vec)
    for rows in (0, 5, 86, 4096):  # fewer rows than one tile, a tile and a tail, many tiles
        y = rng.standard_normal((rows, 96)).astype(np.float32)
        expected = y + vec
        row.add_to(y)
        np.testing.assert_array_equal(y, expected)
    wide = rng.standard_normal((300, 200)).astype(np.float32)
    view = wide[:, :96]  # rows of a wider array: not C-contiguous
    expected = view + vec
    row.add_to(view)
    np.testing.assert_array_equal(view, expected)


@pytest.mark.parametrize("alpha", [0.0, 0.01, 1.0, 2.0, -0.5])
def test_leaky_relu_into_is_x_from_zero_up_and_alpha_x_below(alpha):
    # inf and NaN included: at alpha 0, max(x, 0 * x) would give NaN for +inf
    x = np.array([-np.inf, -3.0, -0.0, 0.0, 2.5, np.inf, np.nan], np.float32)
    with np.errstate(invalid="ignore"):
        expected = np.array([v if not v < 0 else np.float32(alpha) * v for v in x], np.float32)
        for given in (x, np.array(np.float32(-2.0))):
            want = expected if given is x else np.float32(alpha) * given
            np.testing.assert_array_equal(leaky_relu_into(given, alpha), want)
            in_place = given.copy()
            assert leaky_relu_into(in_place, alpha, in_place) is in_place
            np.testing.assert_array_equal(in_place, want)


def test_strided_view_is_as_strided_read_only_and_bounds_checked():
    a = np.arange(60, dtype=np.float32).reshape(6, 10)
    item = a.itemsize
    view = strided_view(a, 2 * 10 * item, (3, 2, 4), (10 * item, 10 * item, 2 * item))
    expected = np.lib.stride_tricks.as_strided(a[2], (3, 2, 4), (10 * item, 10 * item, 2 * item))
    np.testing.assert_array_equal(view, expected)
    assert not view.flags.writeable and np.shares_memory(view, a)
    with pytest.raises(ValueError):
        strided_view(a, 5 * 10 * item, (3, 10), (10 * item, item))  # past the end of a


def _kept(shape, layout, calls):
    def prepare(buf):
        calls.append(layout)
        buf[...] = 0

    return thread_scratch_kept(("test_kept", threading.get_ident()), shape, np.dtype(np.float32), layout, prepare)


def test_thread_scratch_kept_prepares_once_per_layout_and_buffer():
    calls = []
    first = _kept((4, 5), "a", calls)
    first[1:3, 1:4] = 7  # a caller writes the inside only
    again = _kept((4, 5), "a", calls)
    assert calls == ["a"] and np.shares_memory(first, again) and again[0, 0] == 0 and again[1, 1] == 7
    _kept((2, 3), "b", calls)  # another layout: prepared again, and so is the first one after it
    _kept((4, 5), "a", calls)
    assert calls == ["a", "b", "a"]
    grown = _kept((40, 50), "a", calls)  # the same layout in a new (larger) buffer
    assert calls == ["a", "b", "a", "a"] and not grown.any()
