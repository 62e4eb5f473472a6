"""onnxruntime contrib ops that its optimizers write around attention and convolutions:

* com.microsoft: EmbedLayerNormalization, BiasSoftmax, BiasAdd, BiasSplitGelu, NhwcMaxPool;
* com.microsoft.nchwc: the blocked-layout ops of onnxruntime's level-ALL NCHWc transformer
  (ReorderInput, ReorderOutput, Conv, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool,
  Upsample).

NCHWc here: onnxruntime keeps such tensors as (N, C/b, H, W, b) blocks in memory but gives them
the shape (N, C rounded up to b, H, W). onnxrt holds them as plain NCHW arrays of that padded
shape: every consumer of an NCHWc value is one of the ops below (ReorderOutput turns it back), so
the block interleaving never needs to exist in memory. Only the convolution weights, which the
transformer stored already blocked, are un-blocked once at session construction. The block size
b is the one onnxruntime's MLAS picks for the CPU that wrote the model (16 with AVX-512, else 8);
``ONNXRT_NCHWC_BLOCK_SIZE`` overrides it for a model written elsewhere.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable

import numpy as np

from onnxrt.ops.contrib_fused import inplace_activation
from onnxrt.ops.registry import KernelContext, lookup, op, op_factory

MS = "com.microsoft"
NCHWC = "com.microsoft.nchwc"


def _float(op_name: str, name: str, x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"{op_name}: input '{name}' must be a float tensor, got {got}")
    return x


def _compute(x: np.ndarray) -> np.ndarray:
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


# -- EmbedLayerNormalization -------------------------------------------------------------------


@op("EmbedLayerNormalization", 1, domain=MS)
def embed_layer_normalization(input_ids, segment_ids=None, word_embedding=None, position_embedding=None,
                              segment_embedding=None, gamma=None, beta=None, mask=None, position_ids=None,
                              *, epsilon=1e-12, mask_index_type=1):
    name = "EmbedLayerNormalization"
    for n, x in (("word_embedding", word_embedding), ("position_embedding", position_embedding), ("gamma", gamma)):
        if x is None:
            raise ValueError(f"{name}: input '{n}' is required")
        _float(name, n, x)
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"{name}: input_ids must be a 2-D int32 tensor (batch, seq), got {ids.dtype} {ids.shape}")
    b, s = ids.shape
    vocab, hidden = word_embedding.shape

    def gather(table: np.ndarray, index: np.ndarray, what: str) -> np.ndarray:
        if index.size and (index.min() < 0 or index.max() >= table.shape[0]):
            raise ValueError(f"{name}: {what} must lie in [0, {table.shape[0]}), got range "
                             f"[{index.min()}, {index.max()}]")
        return _compute(table)[index]

    emb = gather(word_embedding, ids, "input_ids")
    if position_ids is not None:
        pos = np.broadcast_to(np.asarray(position_ids).astype(np.int64), (b, s))
    else:
        pos = np.broadcast_to(np.arange(s, dtype=np.int64), (b, s))
    emb += gather(position_embedding, pos, "position ids")
    if segment_embedding is not None:
        if segment_ids is None:
            raise ValueError(f"{name}: segment_embedding needs segment_ids")
        emb += gather(segment_embedding, np.asarray(segment_ids), "segment_ids")
    mean = emb.mean(axis=-1, keepdims=True)
    centred = emb - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    out = centred / np.sqrt(var + np.float32(epsilon))
    out *= _compute(gamma)
    if beta is not None:
        out += _compute(beta)
    dt = word_embedding.dtype
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (b, s):
            raise ValueError(f"{name}: mask must have shape (batch, seq) = ({b}, {s}), got {m.shape}")
        mask_index = np.count_nonzero(m, axis=1).astype(np.int32)
    else:
        mask_index = np.zeros(b, dtype=np.int32)
    return out.astype(dt, copy=False), mask_index, emb.astype(dt, copy=False)


# -- Bias* fusions -----------------------------------------------------------------------------


@op("BiasSoftmax", 1, domain=MS)
def bias_softmax(data, bias, *, axis=1, is_inner_broadcast=0):
    """softmax(data + bias) over the axes from ``axis`` on; bias broadcasts numpy-style."""
    _float("BiasSoftmax", "data", data)
    _float("BiasSoftmax", "bias", bias)
    rank = data.ndim
    ax = axis + rank if axis < 0 else axis
    if not 0 <= ax < rank:
        raise ValueError(f"BiasSoftmax: axis {axis} is out of range for rank {rank}")
    if bias.ndim < rank:
        # onnxruntime aligns a lower-rank bias to the leading dims (outer broadcast) or trailing
        # dims (inner broadcast); numpy broadcasting covers the trailing alignment.
        if not is_inner_broadcast:
            bias = bias.reshape(bias.shape + (1,) * (rank - bias.ndim))
    x = _compute(data) + _compute(bias)
    shape = x.shape
    flat = x.reshape(math.prod(shape[:ax]), -1)
    flat = flat - flat.max(axis=1, keepdims=True)
    np.exp(flat, out=flat)
    flat /= flat.sum(axis=1, keepdims=True)
    return flat.reshape(shape).astype(data.dtype, copy=False)


@op("BiasAdd", 1, domain=MS)
def bias_add(X, bias, skip):
    _float("BiasAdd", "X", X)
    if X.ndim != 3 or bias.shape != (X.shape[2],) or skip.shape != X.shape:
        raise ValueError(f"BiasAdd: expected X (N, S, C), bias (C,), skip (N, S, C); got {X.shape}, "
                         f"{bias.shape}, {skip.shape}")
    return (_compute(X) + _compute(bias) + _compute(skip)).astype(X.dtype, copy=False)


def _bare_ctx(op_type: str, attrs: dict | None = None, n_in: int = 1, const_inputs: list | None = None,
              name: str = "", session: Any = None, opset: int = 17) -> KernelContext:
    entry = lookup("", op_type, opset)
    if entry is None:
        raise NotImplementedError(f"no ai.onnx kernel for {op_type} at opset {opset}")
    return KernelContext(
        op_type=op_type, domain="", name=name, opset=opset, since_version=entry[0], attrs=dict(attrs or {}),
        num_inputs=n_in, num_outputs=1, input_names=[f"in{i}" for i in range(n_in)], output_names=["out"],
        const_inputs=list(const_inputs or [None] * n_in), input_types=[None] * n_in, output_types=[None],
        session=session,
    )


def _standard_kernel(op_type: str, attrs: dict, n_in: int = 1, const_inputs: list | None = None,
                     ctx: KernelContext | None = None, opset: int = 17) -> Callable[..., Any]:
    """The ai.onnx kernel for ``op_type``, prepared with ``attrs`` (for ops that differ only in layout)."""
    sub = _bare_ctx(op_type, attrs, n_in, const_inputs, name=ctx.name if ctx else "",
                    session=ctx.session if ctx else None, opset=opset)
    entry = lookup("", op_type, opset)
    return entry[1](sub)


@op("BiasSplitGelu", 1, domain=MS)
def bias_split_gelu(X, bias):
    _float("BiasSplitGelu", "X", X)
    if X.ndim != 3 or bias.shape != (X.shape[2],) or X.shape[2] % 2:
        raise ValueError(f"BiasSplitGelu: expected X (N, S, D) with even D and bias (D,), got {X.shape}, {bias.shape}")
    x = _compute(X) + _compute(bias)
    half = X.shape[2] // 2
    left, right = x[..., :half], x[..., half:]
    erf = _standard_kernel("Erf", {})
    gelu = 0.5 * right * (1.0 + erf(right * right.dtype.type(1.0 / math.sqrt(2.0))))
    return (left * gelu).astype(X.dtype, copy=False)


@op_factory("NhwcMaxPool", 1, domain=MS)
def nhwc_max_pool(ctx: KernelContext):
    attrs = {k: v for k, v in ctx.attrs.items() if k in ("auto_pad", "ceil_mode", "dilations", "kernel_shape",
                                                          "pads", "strides")}
    pool = _standard_kernel("MaxPool", attrs, ctx=ctx)

    def run(x):
        if not isinstance(x, np.ndarray) or x.ndim < 3:
            raise ValueError("NhwcMaxPool: input 'x' must be a tensor of rank >= 3 (N, spatial..., C)")
        to_nchw = (0, x.ndim - 1) + tuple(range(1, x.ndim - 1))
        back = (0,) + tuple(range(2, x.ndim)) + (1,)
        y = pool(np.ascontiguousarray(x.transpose(to_nchw)))
        y = y[0] if isinstance(y, tuple) else y
        return np.ascontiguousarray(y.transpose(back))

    return run


# -- com.microsoft.nchwc -----------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def nchwc_block_size() -> int:
    """MLAS's NCHWc block size on this CPU (16 with AVX-512F, else 8), or $ONNXRT_NCHWC_BLOCK_SIZE."""
    override = os.environ.get("ONNXRT_NCHWC_BLOCK_SIZE")
    if override:
        if override not in ("8", "16"):
            raise ValueError(f"ONNXRT_NCHWC_BLOCK_SIZE must be 8 or 16, got {override!r}")
        return int(override)
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return 16 if " avx512f" in line else 8
    except OSError:
        pass
    return 8


def _round_up(c: int, block: int) -> int:
    return -(-c // block) * block


@op("ReorderInput", 1, domain=NCHWC)
def reorder_input(X, *, channels_last=0):
    if not isinstance(X, np.ndarray) or X.ndim < 3:
        raise ValueError(f"ReorderInput: input 'X' must be a tensor of rank >= 3, got "
                         f"{getattr(X, 'shape', type(X).__name__)}")
    x = np.moveaxis(X, -1, 1) if channels_last else X
    c = x.shape[1]
    cp = _round_up(c, nchwc_block_size())
    if cp == c:
        return np.ascontiguousarray(x)
    y = np.zeros((x.shape[0], cp) + x.shape[2:], dtype=x.dtype)
    y[:, :c] = x
    return y


@op("ReorderOutput", 1, domain=NCHWC)
def reorder_output(X, *, channels=0, channels_last=0):
    if not isinstance(X, np.ndarray) or X.ndim < 3:
        raise ValueError(f"ReorderOutput: input 'X' must be an NCHWc tensor of rank >= 3, got "
                         f"{getattr(X, 'shape', type(X).__name__)}")
    if not 0 < channels <= X.shape[1]:
        raise ValueError(f"ReorderOutput: attribute channels={channels} must be in (0, {X.shape[1]}]")
    y = X[:, :channels]
    if channels_last:
        y = np.moveaxis(y, 1, -1)
    return np.ascontiguousarray(y)


def _unblock_filter(W: np.ndarray, block: int, blocked_inputs: bool) -> np.ndarray:
    """onnxruntime's reordered NCHWc filter -> plain (O, I, *kernel) of the same declared shape.

    ``blocked_inputs``: the OIHWBiBo layout, (O/b, I/b, *k, b_in, b_out) blocks; otherwise OIHWBo,
    (O/b, I, *k, b_out) blocks (NCHW-input and depthwise convolutions)."""
    o, i = W.shape[:2]
    kernel = W.shape[2:]
    nk = len(kernel)
    if o % block or (blocked_inputs and i % block):
        raise ValueError(f"nchwc Conv: filter shape {W.shape} is not a multiple of the NCHWc block size {block}; "
                         f"set ONNXRT_NCHWC_BLOCK_SIZE to the block size of the CPU that wrote the model")
    flat = np.ascontiguousarray(W).reshape(-1)
    if blocked_inputs:
        blocks = flat.reshape((o // block, i // block) + kernel + (block, block))
        # (ob, ib, *k, bi, bo) -> (ob, bo, ib, bi, *k)
        order = (0, 3 + nk, 1, 2 + nk) + tuple(range(2, 2 + nk))
        return np.ascontiguousarray(blocks.transpose(order)).reshape(W.shape)
    blocks = flat.reshape((o // block, i) + kernel + (block,))
    order = (0, 2 + nk, 1) + tuple(range(2, 2 + nk))  # (ob, i, *k, bo) -> (ob, bo, i, *k)
    return np.ascontiguousarray(blocks.transpose(order)).reshape(W.shape)


# Parameters an NCHWc Conv's activation takes when activation_params leaves them out.
_NCHWC_ACTIVATION_DEFAULTS = {"Relu": [], "Sigmoid": [], "Tanh": [], "Clip": [-np.inf, np.inf],
                              "LeakyRelu": [0.01], "HardSigmoid": [0.2, 0.5]}


def _activation(kind: str, params: list[float]) -> Callable[[np.ndarray], np.ndarray] | None:
    """In-place activation of an nchwc Conv's output."""
    if not kind:
        return None
    defaults = _NCHWC_ACTIVATION_DEFAULTS.get(kind)
    if defaults is None:
        raise NotImplementedError(f"nchwc Conv: activation '{kind}' is not supported")
    return inplace_activation(kind, list(params) + defaults[len(params):])


@op_factory("Conv", 1, domain=NCHWC)
def nchwc_conv(ctx: KernelContext):
    attrs = {k: v for k, v in ctx.attrs.items()
             if k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
    raw = ctx.attrs.get("activation", "")
    kind = raw.decode() if isinstance(raw, bytes) else str(raw or "")
    act = _activation(kind, [float(p) for p in ctx.attrs.get("activation_params") or []])
    group = int(attrs.get("group", 1) or 1)
    block = nchwc_block_size()
    W = ctx.const_inputs[1] if len(ctx.const_inputs) > 1 else None
    if W is None:
        raise ValueError(f"nchwc Conv: the filter must be a constant (the NCHWc transformer writes it "
                         f"reordered) ({ctx.describe()})")
    # Depthwise filters and filters over an NCHW input (fewer channels than a block) are blocked
    # on outputs only; the others on both inputs and outputs.
    blocked_inputs = group == 1 and W.shape[1] >= block
    plain_W = _unblock_filter(W, block, blocked_inputs)
    B = ctx.const_inputs[2] if len(ctx.const_inputs) > 2 else None
    conv = _standard_kernel("Conv", attrs, n_in=3, const_inputs=[None, plain_W, B], ctx=ctx)

    def run(X, W_in, B_in=None, Sum=None):
        y = conv(X, plain_W, B_in)
        if Sum is not None:
            if Sum.shape != y.shape:
                raise ValueError(f"nchwc Conv: Sum input shape {Sum.shape} != convolution output shape {y.shape}")
            y = y + Sum if not y.flags.writeable else np.add(y, Sum, out=y)
        if act is not None:
            if not y.flags.writeable:
                y = y.copy()
            y = act(y)
        return y

    return run


def _nchwc_pool(op_type: str, keys: tuple[str, ...]):
    def factory(ctx: KernelContext):
        attrs = {k: v for k, v in ctx.attrs.items() if k in keys}
        kernel = _standard_kernel(op_type, attrs, ctx=ctx)

        def run(X):
            y = kernel(X)
            return y[0] if isinstance(y, tuple) else y

        return run

    return factory


_POOL_KEYS = ("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "strides")
op_factory("MaxPool", 1, domain=NCHWC)(_nchwc_pool("MaxPool", _POOL_KEYS))
op_factory("AveragePool", 1, domain=NCHWC)(_nchwc_pool("AveragePool", _POOL_KEYS + ("count_include_pad",)))
op_factory("GlobalAveragePool", 1, domain=NCHWC)(_nchwc_pool("GlobalAveragePool", ()))
op_factory("GlobalMaxPool", 1, domain=NCHWC)(_nchwc_pool("GlobalMaxPool", ()))


@op_factory("Upsample", 1, domain=NCHWC)
def nchwc_upsample(ctx: KernelContext):
    """Integer-scale spatial upsampling of an NCHWc tensor (scales are per axis, N and C are 1)."""
    scales = [int(s) for s in ctx.attrs.get("scales") or []]
    raw = ctx.attrs.get("mode", "nearest")
    mode = raw.decode() if isinstance(raw, bytes) else str(raw)
    raw_ct = ctx.attrs.get("coordinate_transformation_mode", "asymmetric")
    ct_mode = raw_ct.decode() if isinstance(raw_ct, bytes) else str(raw_ct)
    if mode not in ("nearest", "linear"):
        raise NotImplementedError(f"nchwc Upsample: mode '{mode}' is not supported")
    resize = None
    if mode == "linear":
        resize = _standard_kernel("Resize", {"mode": "linear", "coordinate_transformation_mode": ct_mode},
                                  n_in=3, ctx=ctx, opset=13)

    def run(X):
        if len(scales) != X.ndim or scales[0] != 1 or scales[1] != 1:
            raise ValueError(f"nchwc Upsample: scales {scales} must give 1 for N and C and one per spatial axis "
                             f"of the input {X.shape}")
        if mode == "nearest":
            y = X
            for axis, s in enumerate(scales[2:], start=2):
                if s != 1:
                    y = np.repeat(y, s, axis=axis)
            return y
        return resize(X, None, np.asarray(scales, dtype=np.float32))

    return run
