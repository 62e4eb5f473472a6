"""Shared kernel helpers (onnxrt.ops._common)."""

from __future__ import annotations

import numpy as np
import pytest

from onnxrt.ops._common import contiguous_copy


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
