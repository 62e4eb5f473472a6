"""runtime.blas.accumulate: out += a @ b, one BLAS call where the operands allow, else a product and an add."""

from __future__ import annotations

import numpy as np
import pytest

from onnxrt.runtime import blas

rng = np.random.default_rng(0)


def _expect_sum(a, b, out):
    want = out.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    blas.accumulate(a, b, out)
    tol = 1e-4 if out.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


def _no_product(*args, **kwargs):
    raise AssertionError("took the product-and-add path")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["rows", "a transposed", "b transposed", "both transposed", "column slices",
                                    "one column times one row"])
def test_accumulate_adds_the_product_in_one_blas_call(dtype, layout, monkeypatch):
    m, k, n = 7, 5, 9
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    if layout in ("a transposed", "both transposed"):
        a = np.ascontiguousarray(a.T).T
    if layout in ("b transposed", "both transposed"):
        b = np.ascontiguousarray(b.T).T
    if layout == "column slices":  # leading dimensions larger than the widths: views of wider arrays
        a = rng.standard_normal((m, k + 3)).astype(dtype)[:, 1:1 + k]
        b = rng.standard_normal((k, n + 4)).astype(dtype)[:, 2:2 + n]
    if layout == "one column times one row":
        a, b = a[:, :1], b[:1]
    out = rng.standard_normal((m, n + 2)).astype(dtype)[:, :n]
    if blas.accumulates():
        monkeypatch.setattr(blas.np, "matmul", _no_product)
    _expect_sum(a, b, out)


@pytest.mark.parametrize("case", ["overlap", "mixed dtypes", "float16", "strided rows"])
def test_accumulate_falls_back_where_blas_cannot_take_the_operands(case):
    a = rng.standard_normal((6, 4)).astype(np.float32)
    b = rng.standard_normal((4, 5)).astype(np.float32)
    out = rng.standard_normal((6, 5)).astype(np.float32)
    if case == "overlap":  # out is a view of the same memory as a: BLAS would read what it writes
        base = rng.standard_normal((6, 10)).astype(np.float32)
        a, out = base[:, :4], base[:, 5:]
    elif case == "mixed dtypes":
        b = b.astype(np.float64)
    elif case == "float16":
        a, b, out = a.astype(np.float16), b.astype(np.float16), out.astype(np.float16)
    else:  # neither rows nor columns contiguous
        a = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2]
    want = out.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    blas.accumulate(a, b, out)
    tol = 1e-2 if out.dtype == np.float16 else 1e-5
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


def test_accumulate_empty_and_bad_shapes():
    out = np.ones((3, 0), np.float32)
    blas.accumulate(np.ones((3, 2), np.float32), np.ones((2, 0), np.float32), out)
    out = np.ones((3, 4), np.float32)
    blas.accumulate(np.ones((3, 0), np.float32), np.ones((0, 4), np.float32), out)  # k = 0 adds nothing
    np.testing.assert_array_equal(out, 1)
    with pytest.raises(ValueError, match=r"\(3, 2\) @ \(3, 4\)"):
        blas.accumulate(np.ones((3, 2), np.float32), np.ones((3, 4), np.float32), out)
    frozen = np.ones((3, 4), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        blas.accumulate(np.ones((3, 2), np.float32), np.ones((2, 4), np.float32), frozen)


def test_numpy_wheels_openblas_is_found():
    """numpy's wheels bundle OpenBLAS with the 64-bit-integer CBLAS entry points looked for: this
    machine's numpy is one, so the single-call path is the one the conv kernels get."""
    from onnxrt.runtime import threads

    if not any(getattr(lib, "internal_api", None) == "openblas" for lib in threads.blas_libraries()):
        pytest.skip("numpy here is not built on OpenBLAS")
    assert blas.accumulates()


def test_without_the_library_everything_takes_the_numpy_paths(monkeypatch):
    """Where no OpenBLAS entry point is found (another BLAS, numpy built otherwise): accumulate is a
    product and an add, and convs neither offer an in-place residual nor take the tap GEMMs."""
    from onnxrt.ops import conv

    monkeypatch.setattr(blas, "_gemm", {})
    assert not blas.accumulates()
    a, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((3, 5)).astype(np.float32)
    out = rng.standard_normal((4, 5)).astype(np.float32)
    _expect_sum(a, b, out)
    assert not conv._ConvGeometry("Conv", (1, 64, 56, 56), (64, 64, 3, 3), {"pads": [1, 1, 1, 1]}).tap_gemms
    from onnxrt.ops.registry import KernelContext

    ctx = KernelContext(op_type="FusedConv", domain="com.microsoft", name="", opset=1, since_version=1,
                        attrs={}, num_inputs=4, num_outputs=1, input_names=[""] * 4, output_names=["Y"],
                        const_inputs=[None] * 4, input_types=[None] * 4, output_types=[None], num_captured=0,
                        session=None)
    assert not hasattr(conv.conv_kernel(ctx), "inplace")
