"""MatMul, Gemm, Einsum, Det."""

from __future__ import annotations

import re

import numpy as np

from onnxrt.ops._common import contiguous_copy
from onnxrt.ops.registry import KernelContext, as_array, op, op_factory


def _via_float32(dtype: np.dtype) -> bool:
    """float16 (no BLAS, poor accumulation) and ml_dtypes floats are multiplied in float32."""
    return dtype == np.float16 or (dtype.kind == "V" and "int" not in dtype.name)


def _check_tensor(x, op_name: str, input_name: str) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op_name}: input '{input_name}' must be a tensor, got {type(x).__name__}")
    if x.dtype.kind in "OUSb":
        raise TypeError(f"{op_name}: input '{input_name}' has unsupported dtype {x.dtype}")


@op("MatMul", 1)
def matmul(A, B):
    _check_tensor(A, "MatMul", "A")
    _check_tensor(B, "MatMul", "B")
    if A.ndim == 0 or B.ndim == 0:
        raise ValueError(f"MatMul: inputs must have rank >= 1, got A {A.shape} and B {B.shape}")
    k_b = B.shape[0] if B.ndim == 1 else B.shape[-2]
    if A.shape[-1] != k_b:
        raise ValueError(
            f"MatMul: inner dimensions differ: A has shape {A.shape} (K={A.shape[-1]}), "
            f"B has shape {B.shape} (K={k_b})"
        )
    if A.dtype != B.dtype:
        raise TypeError(f"MatMul: A and B must have the same dtype, got {A.dtype} and {B.dtype}")
    if _via_float32(A.dtype):
        out = np.matmul(A.astype(np.float32), B.astype(np.float32))
        return as_array(out).astype(A.dtype)
    if A.ndim > 2 and B.ndim == 2:
        # (..., M, K) @ (K, N) is one (prod(...)*M, K) @ (K, N) GEMM: numpy's matmul would loop over the
        # batch (and copy a non-contiguous A per item), several times slower than one BLAS call
        rows = np.ascontiguousarray(A).reshape(-1, A.shape[-1])
        return np.matmul(rows, B).reshape(A.shape[:-1] + (B.shape[1],))
    try:
        out = np.matmul(A, B)
    except ValueError as e:  # batch dimensions that do not broadcast
        raise ValueError(f"MatMul: cannot broadcast A {A.shape} with B {B.shape}: {e}") from None
    return as_array(out)


# A constant B is copied once into the (K, N) layout BLAS reads fastest (5-10% on a GEMM or GEMV) up
# to this size; a larger one stays a transposed view, which BLAS reads as it lies: light VGG-19's
# 103M-element fc weight runs 13.6 ms a run as a view, 13.4 ms copied, where the copy would hold a
# second 411 MB. Not lower: OpenBLAS's GEMV on a transposed view sums its first columns in another
# order, and light AlexNet's constant 38M-element weight then gives logits that differ by an ulp,
# which its softmax turns into 0 against onnxruntime's uniform 0.001 (the logits are 3.6e12, an ulp 2.6e5).
_PACK_LIMIT_ELEMENTS = 1 << 26


@op_factory("Gemm", 1, 7, 11)
def gemm(ctx: KernelContext):
    trans_a = bool(ctx.attrs.get("transA", 0))
    trans_b = bool(ctx.attrs.get("transB", 0))
    alpha = float(ctx.attrs.get("alpha", 1.0))
    beta = float(ctx.attrs.get("beta", 1.0))
    const = list(ctx.const_inputs) + [None] * 3
    B_const = const[1]
    C_const = const[2] if ctx.num_inputs > 2 else None

    def prep_b(B):
        """B as the right operand (K, N) in the compute dtype."""
        if _via_float32(B.dtype):
            B = B.astype(np.float32)
        return B.T if trans_b else B

    pre_b = None
    if B_const is not None and B_const.ndim == 2:
        pre_b = prep_b(B_const)
        if pre_b.size <= _PACK_LIMIT_ELEMENTS:
            pre_b = contiguous_copy(pre_b)
            pre_b.flags.writeable = False

    pre_c = None
    if C_const is not None:
        if beta == 0.0:
            pre_c = False  # C never contributes
        else:
            cdt = np.float32 if _via_float32(C_const.dtype) else C_const.dtype
            c = C_const.astype(cdt) if C_const.dtype != cdt else C_const
            if beta != 1.0:
                c = (c.astype(np.float64) * beta).astype(cdt) if cdt.kind in "iu" else c * cdt.type(beta)
            pre_c = c

    def run(A, B, C=None):
        _check_tensor(A, "Gemm", "A")
        _check_tensor(B, "Gemm", "B")
        if A.ndim != 2 or B.ndim != 2:
            raise ValueError(f"Gemm: A and B must be 2-D, got A {A.shape} and B {B.shape}")
        dt = A.dtype
        if B.dtype != dt:
            raise TypeError(f"Gemm: A and B must have the same dtype, got {dt} and {B.dtype}")
        Am = A.astype(np.float32) if _via_float32(dt) else A
        if trans_a:
            Am = Am.T
        Bm = pre_b if pre_b is not None else prep_b(B)
        if Am.shape[1] != Bm.shape[0]:
            raise ValueError(
                f"Gemm: inner dimensions differ: A{'ᵀ' if trans_a else ''} is {Am.shape}, "
                f"B{'ᵀ' if trans_b else ''} is {Bm.shape}"
            )
        Y = np.matmul(Am, Bm)
        cdt = Y.dtype
        if alpha != 1.0:
            if cdt.kind in "iu":
                Y = (Y * alpha).astype(cdt)
            else:
                Y *= cdt.type(alpha)
        if C is not None and pre_c is not False and beta != 0.0:
            if pre_c is not None:
                c = pre_c
            else:
                c = C.astype(cdt) if C.dtype != cdt else C
                if beta != 1.0:
                    c = (c * beta).astype(cdt) if cdt.kind in "iu" else c * cdt.type(beta)
            try:
                if np.broadcast_shapes(c.shape, Y.shape) != Y.shape:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"Gemm: C of shape {C.shape} is not unidirectionally broadcastable to the "
                    f"result shape {Y.shape}"
                ) from None
            Y += c
        return Y.astype(dt, copy=False)

    return run


_EINSUM_TERM = re.compile(r"^(?:[A-Za-z]|\.\.\.)*$")


@op_factory("Einsum", 12)
def einsum(ctx: KernelContext):
    eq = str(ctx.attrs.get("equation", "")).replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if not all(_EINSUM_TERM.match(t) for t in terms) or (arrow and not _EINSUM_TERM.match(rhs)):
        raise ValueError(f"Einsum: invalid equation '{ctx.attrs.get('equation')}'")
    n_terms = len(terms)
    optimize = n_terms > 1

    def run(*Inputs):
        if len(Inputs) != n_terms:
            raise ValueError(f"Einsum: equation '{eq}' has {n_terms} operand(s), got {len(Inputs)} inputs")
        for i, (x, t) in enumerate(zip(Inputs, terms)):
            _check_tensor(x, "Einsum", f"Inputs[{i}]")
            letters = len(t.replace("...", ""))
            if ("..." in t and x.ndim < letters) or ("..." not in t and x.ndim != letters):
                raise ValueError(f"Einsum: operand {i} has rank {x.ndim}, which does not fit term '{t}' of '{eq}'")
        dt = Inputs[0].dtype
        ops = [x.astype(np.float32) if _via_float32(x.dtype) else x for x in Inputs]
        try:
            out = np.einsum(eq, *ops, optimize=optimize)
        except ValueError as e:
            raise ValueError(f"Einsum: '{eq}' on shapes {[x.shape for x in Inputs]}: {e}") from None
        return as_array(out).astype(dt, copy=False)

    return run


@op("Det", 11)
def det(X):
    _check_tensor(X, "Det", "X")
    if X.ndim < 2 or X.shape[-1] != X.shape[-2]:
        raise ValueError(f"Det: input 'X' must be [*, M, M], got shape {X.shape}")
    if X.dtype.kind in "iu":
        raise TypeError(f"Det: input 'X' must be a float tensor, got {X.dtype}")
    Xf = X.astype(np.float32) if _via_float32(X.dtype) else X
    return as_array(np.linalg.det(Xf)).astype(X.dtype, copy=False)
