"""``out += a @ b`` in one BLAS call: GEMM with beta = 1, which ``np.matmul`` cannot ask for.

``np.matmul`` always overwrites its output, so a sum of products (a conv's residual input plus its
GEMM) costs one more pass over the output for the add. BLAS computes C = A B + beta C in the call
itself; with beta = 1 the sum costs what the product alone does (ResNet-50's 256-channel 56x56
residual conv, alone: 698 us as product and add, 351 us as one accumulating call).

The library is the OpenBLAS numpy runs on (its wheels bundle one; threadpoolctl, which already sets
its thread count, finds the file), called through ``ctypes``, which releases the GIL as ``np.matmul``
does. :func:`accumulates` says whether such an entry point was found; without one (another BLAS, a
numpy built differently) :func:`accumulate` still gives the right sum as a product and an add, and
callers that only pay with the single call keep their numpy path.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Callable

import numpy as np

from onnxrt.runtime import threads

# CBLAS enums
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

# CBLAS GEMM symbols ({} = s or d) of OpenBLAS builds with 64-bit integers: numpy >= 2's
# scipy-openblas, numpy 1.26's openblas64_
_ENTRY_POINTS = ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_")

_lock = threading.Lock()
_gemm: dict[np.dtype, Callable[..., None]] | None = None


def _find_gemm() -> dict[np.dtype, Callable[..., None]]:
    """sgemm / dgemm of the first loaded OpenBLAS exposing a known 64-bit-integer CBLAS symbol."""
    for lib in threads.blas_libraries():
        if getattr(lib, "internal_api", None) != "openblas":
            continue
        try:
            dll = ctypes.CDLL(lib.filepath)
        except OSError:
            continue
        for pattern in _ENTRY_POINTS:
            try:
                found = {np.dtype(np.float32): (getattr(dll, pattern.format("s")), ctypes.c_float),
                         np.dtype(np.float64): (getattr(dll, pattern.format("d")), ctypes.c_double)}
            except AttributeError:
                continue
            i64 = ctypes.c_int64
            for function, real in found.values():
                function.restype = None
                function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64,
                                     real, ctypes.c_void_p, i64, ctypes.c_void_p, i64, real, ctypes.c_void_p, i64]
            return {dtype: function for dtype, (function, _) in found.items()}
    return {}


def _functions() -> dict[np.dtype, Callable[..., None]]:
    global _gemm
    if _gemm is None:
        with _lock:
            if _gemm is None:
                _gemm = _find_gemm()
    return _gemm


def accumulates() -> bool:
    """Whether :func:`accumulate` is one BLAS call for float32 and float64 (else a product and an add)."""
    return bool(_functions())


def _operand(x: np.ndarray, rows: int, cols: int) -> tuple[int, int] | None:
    """(CBLAS transpose flag, leading dimension) of a (rows, cols) matrix as it lies in memory, or
    None when BLAS cannot read it in place (neither its rows nor its columns contiguous, or rows
    that overlap)."""
    item = x.itemsize
    s0, s1 = x.strides
    if s1 == item or cols == 1:
        ld = cols if rows == 1 else s0 // item
        if rows == 1 or (s0 > 0 and s0 % item == 0 and ld >= cols):
            return _NO_TRANS, max(1, ld)
    if s0 == item or rows == 1:
        ld = rows if cols == 1 else s1 // item
        if cols == 1 or (s1 > 0 and s1 % item == 0 and ld >= rows):
            return _TRANS, max(1, ld)
    return None


def accumulate(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out += a @ b`` for 2-D float arrays of one dtype: a (m, k), b (k, n), out (m, n).

    One BLAS call (beta = 1) when numpy's OpenBLAS was found, the operands are float32 or float64,
    each lies as rows or columns BLAS reads in place, ``out``'s rows are contiguous and it overlaps
    neither operand; otherwise the product is made and added."""
    m, k = a.shape
    n = b.shape[1]
    if b.shape[0] != k or out.shape != (m, n):
        raise ValueError(f"accumulate: shapes {a.shape} @ {b.shape} do not make {out.shape}")
    if not out.flags.writeable:
        raise ValueError("accumulate: the output array is read-only")
    if m == 0 or n == 0 or k == 0:
        return
    gemm = _functions().get(out.dtype)
    if gemm is not None and a.dtype == b.dtype == out.dtype and a.flags.aligned and b.flags.aligned:
        layout_a = _operand(a, m, k)
        layout_b = _operand(b, k, n)
        layout_out = _operand(out, m, n)
        if (layout_a is not None and layout_b is not None and layout_out is not None
                and (layout_out[0] == _NO_TRANS and out.flags.aligned)
                and not np.may_share_memory(out, a) and not np.may_share_memory(out, b)):
            gemm(_ROW_MAJOR, layout_a[0], layout_b[0], m, n, k, 1.0, a.ctypes.data, layout_a[1],
                 b.ctypes.data, layout_b[1], 1.0, out.ctypes.data, layout_out[1])
            return
    out += np.matmul(a, b)
