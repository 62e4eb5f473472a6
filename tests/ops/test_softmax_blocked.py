"""Softmax/LogSoftmax over the last axis of inputs large enough to go through row blocks."""

import numpy as np
import pytest

import onnxrt.ops.softmax as sm


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 700, 333), (1, 1, 4000, 97), (5, 200000)])
def test_blocked_matches_whole(shape, log):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    got = sm._softmax_last_axis(x, log, np.dtype(np.float32))
    x64 = x.astype(np.float64)
    z = x64 - x64.max(axis=-1, keepdims=True)
    want = z - np.log(np.exp(z).sum(axis=-1, keepdims=True)) if log else np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
