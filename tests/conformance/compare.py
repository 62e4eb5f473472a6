"""Exact-dtype, exact-shape comparison of a runtime's outputs with expected ones."""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_ml_float(dtype: np.dtype) -> bool:
    # bfloat16, float8*, float4, float6 live in ml_dtypes with numpy kind 'V'
    return dtype.kind == "V" and "int" not in dtype.name


def assert_same(expected: Any, actual: Any, rtol: float, atol: float, where: str = "output") -> None:
    if expected is None:
        assert actual is None, f"{where}: expected no value (None), got {type(actual).__name__}"
        return
    if isinstance(expected, (list, tuple)):
        assert isinstance(actual, list), f"{where}: expected a sequence (list), got {type(actual).__name__}"
        assert len(actual) == len(expected), f"{where}: sequence length {len(actual)} != expected {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_same(e, a, rtol, atol, f"{where}[{i}]")
        return
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected a map (dict), got {type(actual).__name__}"
        assert set(actual) == set(expected), f"{where}: map keys {sorted(actual)} != {sorted(expected)}"
        for k in expected:
            assert_same(expected[k], actual[k], rtol, atol, f"{where}[{k!r}]")
        return
    expected = np.asarray(expected)
    assert isinstance(actual, np.ndarray), f"{where}: expected numpy array, got {type(actual).__name__}"
    assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != expected {expected.dtype}"
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != expected {expected.shape}"
    if expected.dtype == object or expected.dtype.kind in "biuUS" or expected.dtype == np.bool_:
        np.testing.assert_array_equal(actual, expected, err_msg=where)
    elif _is_ml_float(expected.dtype):
        np.testing.assert_allclose(
            actual.astype(np.float32), expected.astype(np.float32), rtol=rtol, atol=atol, equal_nan=True, err_msg=where
        )
    elif expected.dtype.kind == "V":  # int4/uint4/int2/uint2
        np.testing.assert_array_equal(actual.astype(np.int32), expected.astype(np.int32), err_msg=where)
    else:
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=where)
