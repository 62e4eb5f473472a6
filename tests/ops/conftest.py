"""Fixtures shared by the kernel tests."""

from __future__ import annotations

import pytest

from onnxrt.ops import pool


@pytest.fixture(params=["taps", "matrix"])
def average_pool_path(request, monkeypatch):
    """Runs an AveragePool test once through the tap passes and once through the averaging matrix's
    GEMM, whatever the shape would choose."""
    if request.param == "taps":
        monkeypatch.setattr(pool, "_MATRIX_MAX_POSITIONS_PER_TAP", 0)
    else:
        monkeypatch.setattr(pool, "_MATRIX_MAX_POSITIONS_PER_TAP", 1 << 30)
        monkeypatch.setattr(pool, "_MATRIX_MAX_ENTRIES", 1 << 40)
    return request.param
