"""onnxruntime's com.microsoft attention ops for transformer models: Attention (packed QKV
weights), MultiHeadAttention, GroupQueryAttention and RotaryEmbedding.

Semantics follow onnxruntime's CPU kernels, which is what models written by its transformers
optimizer are validated against:

* scores are ``scale * Q K^T`` (scale defaults to 1/sqrt(head_size)), computed in float32 for
  float16/bfloat16 inputs and cast back at the end;
* masks become an *additive* term: a padded key gets ``mask_filter_value`` (-10000 by default)
  added, while the causal rule of ``unidirectional`` removes future keys outright (-inf), so a
  row whose visible keys are all padding softmaxes over those keys the way onnxruntime's does;
* GroupQueryAttention masks with -inf (its keys beyond a sequence's length are never read) and
  each batch entry has its own past length, ``seqlens_k[b] + 1 - sequence_length``.
"""

from __future__ import annotations

import math
from typing import Any

import ml_dtypes
import numpy as np

from onnxrt.ops.registry import KernelContext, op_factory

MS = "com.microsoft"
_FLOATS = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float64))


def _float_input(op_name: str, name: str, x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype not in _FLOATS:
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"{op_name}: input '{name}' must be a float, float16 or bfloat16 tensor, got {got}")
    return x


def _compute(x: np.ndarray) -> np.ndarray:
    """float16/bfloat16 work goes through float32, as onnxruntime's CPU kernels do."""
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)


def _check_rank(op_name: str, name: str, x: np.ndarray, ranks: tuple[int, ...]) -> None:
    if x.ndim not in ranks:
        raise ValueError(f"{op_name}: input '{name}' must have rank {' or '.join(map(str, ranks))}, got shape {x.shape}")


def _heads(x: np.ndarray, num_heads: int, op_name: str, name: str) -> np.ndarray:
    """(batch, seq, heads * size) -> (batch, heads, seq, size)."""
    b, s, hidden = x.shape
    if num_heads <= 0 or hidden % num_heads:
        raise ValueError(
            f"{op_name}: the hidden size of '{name}' ({hidden}) must be a positive multiple of num_heads ({num_heads})"
        )
    return x.reshape(b, s, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)


def _merge_heads(y: np.ndarray) -> np.ndarray:
    b, n, s, h = y.shape
    return y.transpose(0, 2, 1, 3).reshape(b, s, n * h)


def _softmax(scores: np.ndarray) -> np.ndarray:
    """In-place softmax over the last axis (``scores`` is owned by the caller)."""
    m = np.max(scores, axis=-1, keepdims=True)
    m[~np.isfinite(m)] = 0
    scores -= m
    np.exp(scores, out=scores)
    total = np.sum(scores, axis=-1, keepdims=True)
    total[total == 0] = 1
    scores /= total
    return scores


def _attend(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, additive: np.ndarray | None,
            softcap: float = 0.0, sink: np.ndarray | None = None, want_qk: int = 0):
    """softmax(scale * q k^T [softcapped] + additive) v with grouped heads.

    q (B, N, S, H); k, v (B, Nkv, T, H*) with N a multiple of Nkv; ``additive`` broadcasts to
    (B, N, S, T). Returns (B, N, S, Hv) and the requested qk tensor (1: scaled scores with the
    additive term, 2: probabilities) or None."""
    b, n, s, h = q.shape
    nkv, t = k.shape[1], k.shape[2]
    group = n // nkv
    scores = np.matmul(q.reshape(b, nkv, group * s, h), k.transpose(0, 1, 3, 2))
    scores = scores.reshape(b, n, s, t)
    scores *= scores.dtype.type(scale)
    if softcap > 0:
        np.tanh(scores / softcap, out=scores)
        scores *= scores.dtype.type(softcap)
    if additive is not None:
        scores += additive
    qk = scores.copy() if want_qk == 1 else None
    if sink is not None:
        # A per-head sink logit joins the softmax denominator but contributes no value.
        sink4 = np.broadcast_to(sink.astype(scores.dtype).reshape(1, -1, 1, 1), (b, n, s, 1))
        probs = _softmax(np.concatenate((scores, sink4), axis=-1))[..., :t]
    else:
        probs = _softmax(scores)
    if want_qk == 2:
        qk = probs.copy()
    y = np.matmul(probs.reshape(b, nkv, group * s, t), v).reshape(b, n, s, v.shape[3])
    return y, qk


# Query rows per block: the (batch, heads, rows, kv_len) score tile stays near this size (measured best
# on a 2 MiB-L2 Xeon for Whisper's 6 x 1500 x 1500: 87 ms at 2 MiB, 66 ms at 8 MiB, 87 ms unblocked)
_TILE_BYTES = 8 << 20
# exp(score) without subtracting the row maximum when every row maximum of a tile lies within this
# bound: the largest probability numerator is then at most e^30 and the smallest row sum at least
# e^-30, both far inside float32's normal range, and softmax is the same up to rounding
_UNSHIFTED_EXP_BOUND = 30.0
_UNSHIFTED_NUMERATOR_MAX = math.exp(_UNSHIFTED_EXP_BOUND)
_LOG2_E = 1.0 / math.log(2.0)


def _attend_merged(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                   additive: np.ndarray | None) -> np.ndarray:
    """softmax(scale * q k^T + additive) v for q (B, N, S, H), k/v (B, N, T, H*) -> (B, S, N * Hv).

    Q is scaled once; the scores come from one batched matmul per block of query rows, sized so the
    score tile stays in cache (the full (B, N, S, T) tensor is never built for long sequences); the
    softmax runs in place on the tile and its normalisation is applied to the (rows, Hv) output
    instead of the (rows, T) probabilities. V carries an extra column of ones, so the same matmul
    that weights the values also sums each row's numerators. The row maximum is subtracted only
    when some row's maximum is far from zero (saves a pass over the tile: ~15% of Whisper's
    attention), and not even looked for when the norms of Q's and K's rows bound every score
    (then in base 2). Rows whose keys are all -inf give zeros."""
    b, n, s, h = q.shape
    t, hv = k.shape[2], v.shape[3]
    dt = np.result_type(q.dtype, k.dtype)
    if additive is not None and not additive.any():
        additive = None  # all zeros (a padding mask of all ones) adds nothing
    kt = k.transpose(0, 1, 3, 2)
    v1 = np.empty((b, n, t, hv + 1), dtype=dt)
    v1[..., :hv] = v
    v1[..., hv] = 1
    # unshifted numerators reach e^bound: allowed only while bound * t * max|v| stays finite too
    v_max = float(np.max(np.abs(v))) if v.size else 0.0
    unshifted_ok = math.isfinite(v_max) and v_max * t * _UNSHIFTED_NUMERATOR_MAX < 1e36
    a4 = None
    if additive is not None:
        a4 = additive.reshape((1,) * (4 - additive.ndim) + additive.shape) if additive.ndim < 4 else additive
    # With no additive term, |score| <= |q_i| |k_j| (Cauchy-Schwarz): when that bounds every score
    # inside the unshifted range, no tile needs its row maxima (a pass over it: ~8% of Whisper's
    # attention; norms of Q's and K's rows cost a pass over those, 1/t and 1/s of a tile's size), and
    # the scores go in base-2 units: exp(x) = exp2(x * log2(e)), the factor riding on Q's scaling.
    # numpy's exp2 is ~1.7x faster than exp (6 x 233 x 1500 float32: 0.62 against 1.08 ms) while its
    # results are normal numbers, which the bound guarantees; far below (masked or shifted scores,
    # -200) it is 10x slower than exp.
    bounded = False
    if unshifted_ok and additive is None and s and t:
        q_norm2 = np.einsum("bnsh,bnsh->bns", q, q).max(axis=-1)
        k_norm2 = np.einsum("bnth,bnth->bnt", k, k).max(axis=-1)
        largest = abs(scale) * math.sqrt(float(np.max(q_norm2.astype(np.float64) * k_norm2)))
        bounded = largest < _UNSHIFTED_EXP_BOUND
    unit = _LOG2_E if bounded else 1.0
    qs = q * dt.type(scale * unit)
    bound = _UNSHIFTED_EXP_BOUND * unit
    out = np.empty((b, s, n, hv), dtype=dt)
    out_heads = out.transpose(0, 2, 1, 3)  # (B, N, S, Hv) view
    rows = max(1, min(s, _TILE_BYTES // max(1, b * n * t * dt.itemsize)))
    tile = np.empty((b, n, rows, t), dtype=dt)
    y = np.empty((b, n, rows, hv + 1), dtype=dt)
    for r0 in range(0, s, rows):
        r1 = min(s, r0 + rows)
        sc = tile[:, :, :r1 - r0]
        np.matmul(qs[:, :, r0:r1], kt, out=sc)
        if a4 is not None:
            sc += a4[:, :, r0:r1] if a4.shape[2] != 1 else a4
        shift = False
        if not bounded:
            m = np.max(sc, axis=-1, keepdims=True)
            shift = not (unshifted_ok and -bound < m.min() and m.max() < bound)
        if shift:
            m[~np.isfinite(m)] = 0
            sc -= m
        (np.exp2 if bounded else np.exp)(sc, out=sc)
        yb = y[:, :, :r1 - r0]
        np.matmul(sc, v1, out=yb)
        total = yb[..., hv:]
        if shift:
            total[total == 0] = 1
        np.divide(yb[..., :hv], total, out=out_heads[:, :, r0:r1])
    return out.reshape(b, s, n * hv)


def _masked_heads_attrs(ctx: KernelContext, op_name: str) -> tuple[int, bool, float]:
    """num_heads (required), unidirectional and mask_filter_value of the BERT-style attention ops."""
    if "num_heads" not in ctx.attrs:
        raise ValueError(f"{op_name}: attribute num_heads is required ({ctx.describe()})")
    return (int(ctx.attrs["num_heads"]), bool(ctx.attrs.get("unidirectional", 0)),
            float(ctx.attrs.get("mask_filter_value", -10000.0)))


def _key_mask(op_name: str, mask: np.ndarray, batch: int, s: int, t: int, past: int, filter_value: float) -> np.ndarray:
    """An int mask in any of onnxruntime's layouts -> additive (B, 1, S, T) float32 term."""
    m = np.asarray(mask)
    if m.dtype.kind not in "iub":
        raise TypeError(f"{op_name}: the mask must be an int32 tensor, got {m.dtype}")
    cols = np.arange(t)
    if m.ndim == 1:
        if m.shape[0] == batch:  # right padding: actual lengths
            keep = cols[None, :] < m[:, None]
        elif m.shape[0] == 2 * batch:  # left padding: exclusive ends, then inclusive starts
            keep = (cols[None, :] < m[:batch, None]) & (cols[None, :] >= m[batch:, None])
        else:
            raise ValueError(
                f"{op_name}: a 1-D mask must have batch_size ({batch}) or 2 * batch_size entries, got {m.shape[0]}"
            )
        keep = np.broadcast_to(keep[:, None, None, :], (batch, 1, s, t))
    elif m.ndim == 2:
        if m.shape != (batch, t):
            raise ValueError(f"{op_name}: a 2-D mask must have shape (batch, total_sequence_length) = "
                             f"({batch}, {t}), got {m.shape}")
        keep = np.broadcast_to((m != 0)[:, None, None, :], (batch, 1, s, t))
    elif m.ndim == 3:
        if m.shape != (batch, s, t):
            raise ValueError(f"{op_name}: a 3-D mask must have shape (batch, sequence_length, "
                             f"total_sequence_length) = ({batch}, {s}, {t}), got {m.shape}")
        keep = (m != 0)[:, None]
    elif m.ndim == 4:
        # (batch, 1, max_sequence_length, max_sequence_length): rows from the past length on.
        if m.shape[0] != batch or m.shape[2] < past + s or m.shape[3] < t:
            raise ValueError(f"{op_name}: a 4-D mask must have shape (batch, 1, max_len, max_len) with "
                             f"max_len >= {max(t, past + s)}, got {m.shape}")
        keep = m[:, :1, past:past + s, :t] != 0
    else:
        raise ValueError(f"{op_name}: mask of rank {m.ndim} is not supported (shape {m.shape})")
    return np.where(keep, np.float32(0), np.float32(filter_value))


def _causal(s: int, t: int, past: int) -> np.ndarray:
    """Additive (S, T) term: query i (absolute position past + i) sees keys j <= past + i.

    Future keys are excluded outright (-inf), unlike padded keys, which get mask_filter_value
    added: that is what onnxruntime does, and it shows when a row's visible keys are all padding."""
    future = np.arange(t)[None, :] > (past + np.arange(s))[:, None]
    return np.where(future, np.float32(-np.inf), np.float32(0))


def _add(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _attention_bias(op_name: str, bias: np.ndarray | None, batch: int, n: int, s: int, t: int) -> np.ndarray | None:
    if bias is None:
        return None
    _float_input(op_name, "attention_bias", bias)
    if bias.ndim != 4 or bias.shape[0] not in (1, batch) or bias.shape[1] not in (1, n) or bias.shape[2:] != (s, t):
        raise ValueError(
            f"{op_name}: attention_bias must have shape (batch_size or 1, num_heads or 1, {s}, {t}), got {bias.shape}"
        )
    return bias.astype(np.float32, copy=False) if bias.dtype != np.float64 else bias


# -- rotary embedding --------------------------------------------------------------------------


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, interleaved: bool) -> np.ndarray:
    """Rotate the first 2 * cos.shape[-1] channels of x (..., S, H); cos/sin broadcast to (..., S, half)."""
    half = cos.shape[-1]
    rd = 2 * half
    out = x.copy()
    if interleaved:
        x1, x2 = x[..., 0:rd:2], x[..., 1:rd:2]
        out[..., 0:rd:2] = x1 * cos - x2 * sin
        out[..., 1:rd:2] = x2 * cos + x1 * sin
    else:
        x1, x2 = x[..., :half], x[..., half:rd]
        out[..., :half] = x1 * cos - x2 * sin
        out[..., half:rd] = x2 * cos + x1 * sin
    return out


def _rotary_tables(op_name: str, cos_cache: np.ndarray, sin_cache: np.ndarray, positions: np.ndarray):
    """Gather cos/sin rows for integer ``positions`` (any shape) -> (*positions.shape, half)."""
    if cos_cache.shape != sin_cache.shape or cos_cache.ndim != 2:
        raise ValueError(
            f"{op_name}: cos_cache and sin_cache must be 2-D with the same shape, got {cos_cache.shape} and {sin_cache.shape}"
        )
    if positions.size and (positions.min() < 0 or positions.max() >= cos_cache.shape[0]):
        raise ValueError(
            f"{op_name}: position ids must lie in [0, {cos_cache.shape[0]}) (rows of cos_cache), "
            f"got range [{positions.min()}, {positions.max()}]"
        )
    return cos_cache[positions].astype(np.float32), sin_cache[positions].astype(np.float32)


@op_factory("RotaryEmbedding", 1, domain=MS)
def rotary_embedding(ctx: KernelContext):
    name = "RotaryEmbedding"
    interleaved = bool(ctx.attrs.get("interleaved", 0))
    packed_batching = bool(ctx.attrs.get("is_packed_batching", 0))
    num_heads_attr = int(ctx.attrs.get("num_heads", 0))
    rotary_dim_attr = int(ctx.attrs.get("rotary_embedding_dim", 0))
    if packed_batching:
        raise NotImplementedError(f"{name}: is_packed_batching=1 is not supported ({ctx.describe()})")

    def run(input, position_ids, cos_cache, sin_cache):  # noqa: A002
        _float_input(name, "input", input)
        _check_rank(name, "input", input, (3, 4))
        half = cos_cache.shape[-1]
        rd = rotary_dim_attr or 2 * half
        if rd != 2 * half:
            raise ValueError(f"{name}: rotary_embedding_dim={rd} but cos_cache has {half} columns (expected {rd // 2})")
        if input.ndim == 4:
            b, n, s, h = input.shape
            x = input
        else:
            b, s, hidden = input.shape
            if num_heads_attr:
                n = num_heads_attr
            else:
                n = hidden // rd if hidden % rd == 0 else 0
            if n <= 0 or hidden % n:
                raise ValueError(f"{name}: cannot split hidden size {hidden} into heads (num_heads={num_heads_attr})")
            h = hidden // n
            x = input.reshape(b, s, n, h).transpose(0, 2, 1, 3)
        if rd > h:
            raise ValueError(f"{name}: rotary dimension {rd} exceeds the head size {h}")
        pos = np.asarray(position_ids).astype(np.int64)
        if pos.size == 1 and pos.shape != (b, s):
            pos = pos.reshape(()) + np.arange(s, dtype=np.int64)[None, :]  # a start offset
        elif pos.shape != (b, s):
            raise ValueError(f"{name}: position_ids must have shape (batch, seq) = ({b}, {s}) or (1), got {pos.shape}")
        pos = np.broadcast_to(pos, (b, s))
        cos, sin = _rotary_tables(name, cos_cache, sin_cache, pos)
        y = _rotate(_compute(x), cos[:, None], sin[:, None], interleaved).astype(input.dtype, copy=False)
        if input.ndim == 3:
            y = _merge_heads(y)
        return y

    return run


# -- Attention (packed QKV weights) ------------------------------------------------------------


@op_factory("Attention", 1, domain=MS)
def ms_attention(ctx: KernelContext):
    name = "Attention"
    a = ctx.attrs
    num_heads, unidirectional, filter_value = _masked_heads_attrs(ctx, name)
    scale_attr = a.get("scale")
    qkv_sizes = [int(v) for v in a.get("qkv_hidden_sizes") or []]
    do_rotary = bool(a.get("do_rotary", 0))
    rotary_dim_attr = int(a.get("rotary_embedding_dim", 0))
    if a.get("past_present_share_buffer", 0):
        raise NotImplementedError(f"{name}: past_present_share_buffer=1 is not supported ({ctx.describe()})")
    W_const = ctx.const_inputs[1] if len(ctx.const_inputs) > 1 else None
    W_prepared = _compute(W_const) if W_const is not None else None

    def run(input, weights, bias=None, mask_index=None, past=None, attention_bias=None,  # noqa: A002
            past_sequence_length=None):
        _float_input(name, "input", input)
        _check_rank(name, "input", input, (3,))
        _float_input(name, "weights", weights)
        b, s, hin = input.shape
        if weights.ndim != 2 or weights.shape[0] != hin:
            raise ValueError(f"{name}: weights must have shape ({hin}, hidden_q + hidden_k + hidden_v), got {weights.shape}")
        total = weights.shape[1]
        if qkv_sizes:
            if len(qkv_sizes) != 3 or sum(qkv_sizes) != total or qkv_sizes[0] != qkv_sizes[1]:
                raise ValueError(f"{name}: qkv_hidden_sizes {qkv_sizes} must be 3 sizes (q == k) summing to {total}")
            hq, hk, _ = qkv_sizes  # V takes the rest
        else:
            if total % 3:
                raise ValueError(f"{name}: weights' second dimension ({total}) must be 3 * hidden_size")
            hq = hk = total // 3
        w = W_prepared if weights is W_const else _compute(weights)
        x = _compute(input)
        proj = x @ w
        if bias is not None:
            if bias.shape != (total,):
                raise ValueError(f"{name}: bias must have shape ({total},), got {bias.shape}")
            proj += _compute(bias)
        q = _heads(proj[..., :hq], num_heads, name, "Q")
        k = _heads(proj[..., hq:hq + hk], num_heads, name, "K")
        v = _heads(proj[..., hq + hk:], num_heads, name, "V")
        head = hq // num_heads
        past_len = 0
        if past is not None:
            _float_input(name, "past", past)
            if past.ndim != 5 or past.shape[0] != 2 or past.shape[1] != b or past.shape[2] != num_heads \
                    or past.shape[4] != head:
                raise ValueError(f"{name}: past must have shape (2, {b}, {num_heads}, past_len, {head}), got {past.shape}")
            past_len = past.shape[3]
        if do_rotary:
            rd = rotary_dim_attr or head
            positions = past_len + np.arange(s)
            inv = 1.0 / (10000.0 ** (np.arange(0, rd, 2, dtype=np.float32) / rd))
            angles = positions[:, None].astype(np.float32) * inv[None, :]
            cos, sin = np.cos(angles), np.sin(angles)
            q = _rotate(q, cos, sin, False)
            k = _rotate(k, cos, sin, False)
        if past is not None:
            pc = _compute(past)
            k = np.concatenate((pc[0], k), axis=2)
            v = np.concatenate((pc[1], v), axis=2)
        t = k.shape[2]
        additive = None
        if mask_index is not None:
            additive = _key_mask(name, mask_index, b, s, t, past_len, filter_value)
        if unidirectional:
            additive = _add(additive, _causal(s, t, past_len))
        additive = _add(additive, _attention_bias(name, attention_bias, b, num_heads, s, t))
        scale = float(scale_attr) if scale_attr is not None else 1.0 / np.sqrt(head)
        out = _attend_merged(q, k, v, scale, additive).astype(input.dtype, copy=False)
        present = np.stack((k, v)).astype(input.dtype, copy=False) if ctx.num_outputs > 1 else None
        return out, present

    return run


# -- MultiHeadAttention ------------------------------------------------------------------------


@op_factory("MultiHeadAttention", 1, domain=MS)
def multi_head_attention(ctx: KernelContext):
    name = "MultiHeadAttention"
    a = ctx.attrs
    n, unidirectional, filter_value = _masked_heads_attrs(ctx, name)
    scale_attr = a.get("scale")
    want_qk = 2 if ctx.num_outputs > 3 and ctx.output_names[3] else 0

    def run(query, key=None, value=None, bias=None, key_padding_mask=None, attention_bias=None,
            past_key=None, past_value=None, past_sequence_length=None, cache_indirection=None):
        _float_input(name, "query", query)
        if cache_indirection is not None:
            raise NotImplementedError(f"{name}: cache_indirection (beam search) is not supported")
        dt = query.dtype
        qc = _compute(query)
        bias_c = _compute(bias) if bias is not None else None
        b = query.shape[0]
        kv_projected = False  # key/value given as (B, N, L, H): already in heads, no bias
        if query.ndim == 5:  # packed QKV (B, S, N, 3, H)
            if key is not None or value is not None:
                raise ValueError(f"{name}: key and value must be omitted when query is packed QKV {query.shape}")
            if query.shape[2] != n or query.shape[3] != 3:
                raise ValueError(f"{name}: packed QKV must have shape (batch, seq, {n}, 3, head), got {query.shape}")
            h = query.shape[4]
            qkv = qc
            if bias_c is not None:
                qkv = qkv + bias_c.reshape(3, n, h).transpose(1, 0, 2)
            q = qkv[:, :, :, 0].transpose(0, 2, 1, 3)
            k = qkv[:, :, :, 1].transpose(0, 2, 1, 3)
            v = qkv[:, :, :, 2].transpose(0, 2, 1, 3)
        else:
            _check_rank(name, "query", query, (3,))
            hidden = query.shape[2]
            if hidden % n:
                raise ValueError(f"{name}: query hidden size {hidden} is not a multiple of num_heads {n}")
            h = hidden // n
            if bias_c is not None:
                qc = qc + bias_c[:hidden]
            q = _heads(qc, n, name, "query")
            if key is None:
                raise ValueError(f"{name}: key is required unless query is packed QKV")
            _float_input(name, "key", key)
            if key.ndim == 5:  # packed KV (B, L, N, 2, H)
                if value is not None:
                    raise ValueError(f"{name}: value must be omitted when key is packed KV {key.shape}")
                kv = _compute(key)
                if bias_c is not None:
                    kv = kv + bias_c[hidden:].reshape(2, n, h).transpose(1, 0, 2)
                k = kv[:, :, :, 0].transpose(0, 2, 1, 3)
                v = kv[:, :, :, 1].transpose(0, 2, 1, 3)
            elif key.ndim == 4:  # (B, N, L, H): cross attention with keys already projected
                if value is None or value.ndim != 4:
                    raise ValueError(f"{name}: a 4-D key needs a 4-D value, got {None if value is None else value.shape}")
                k, v = _compute(key), _compute(value)
                kv_projected = True
            else:
                _check_rank(name, "key", key, (3,))
                if value is None:
                    raise ValueError(f"{name}: value is required with a 3-D key")
                _float_input(name, "value", value)
                _check_rank(name, "value", value, (3,))
                kc, vc = _compute(key), _compute(value)
                if bias_c is not None:
                    kc = kc + bias_c[hidden:2 * hidden]
                    vc = vc + bias_c[2 * hidden:]
                k = _heads(kc, n, name, "key")
                v = _heads(vc, n, name, "value")
        s = q.shape[2]
        past_len = 0
        if (past_key is None) != (past_value is None):
            raise ValueError(f"{name}: past_key and past_value must be given together")
        if past_key is not None and not kv_projected:
            for pn, p in (("past_key", past_key), ("past_value", past_value)):
                if p.ndim != 4 or p.shape[0] != b or p.shape[1] != n:
                    raise ValueError(f"{name}: {pn} must have shape ({b}, {n}, past_len, head), got {p.shape}")
            past_len = past_key.shape[2]
            k = np.concatenate((_compute(past_key), k), axis=2)
            v = np.concatenate((_compute(past_value), v), axis=2)
        t = k.shape[2]
        additive = None
        if key_padding_mask is not None:
            additive = _key_mask(name, key_padding_mask, b, s, t, past_len, filter_value)
        if unidirectional:
            additive = _add(additive, _causal(s, t, past_len))
        additive = _add(additive, _attention_bias(name, attention_bias, b, n, s, t))
        scale = float(scale_attr) if scale_attr is not None else 1.0 / np.sqrt(h)
        if want_qk:
            y, qk = _attend(q, k, v, scale, additive, want_qk=want_qk)
            out = _merge_heads(y).astype(dt, copy=False)
        else:
            qk = None
            out = _attend_merged(q, k, v, scale, additive).astype(dt, copy=False)
        present_k = k.astype(dt, copy=False)
        present_v = v.astype(dt, copy=False)
        return out, present_k, present_v, (qk.astype(dt, copy=False) if qk is not None else None)

    return run


# -- GroupQueryAttention -----------------------------------------------------------------------


@op_factory("GroupQueryAttention", 1, domain=MS)
def group_query_attention(ctx: KernelContext):
    name = "GroupQueryAttention"
    a = ctx.attrs
    for required in ("num_heads", "kv_num_heads"):
        if required not in a:
            raise ValueError(f"{name}: attribute {required} is required ({ctx.describe()})")
    n = int(a["num_heads"])
    nkv = int(a["kv_num_heads"])
    if nkv <= 0 or n % nkv:
        raise ValueError(f"{name}: num_heads ({n}) must be a positive multiple of kv_num_heads ({nkv})")
    scale_attr = a.get("scale")
    softcap = float(a.get("softcap", 0.0) or 0.0)
    window = int(a.get("local_window_size", -1))
    do_rotary = bool(a.get("do_rotary", 0))
    interleaved = bool(a.get("rotary_interleaved", 0))
    smooth = bool(a.get("smooth_softmax", 0))
    causal = bool(a.get("causal", 1))
    qk_mode = int(a.get("qk_output", 0))
    if a.get("sliding_window_cache", 0):
        raise NotImplementedError(f"{name}: sliding_window_cache=1 is not supported ({ctx.describe()})")
    for quant in ("k_quant_type", "v_quant_type"):
        if str(a.get(quant, "NONE") or "NONE").upper() != "NONE":
            raise NotImplementedError(f"{name}: quantized KV cache ({quant}={a[quant]}) is not supported")

    def run(query, key=None, value=None, past_key=None, past_value=None, seqlens_k=None,
            total_sequence_length=None, cos_cache=None, sin_cache=None, position_ids=None,
            attention_bias=None, head_sink=None, k_scale=None, v_scale=None, q_norm_weight=None,
            k_norm_weight=None):
        _float_input(name, "query", query)
        _check_rank(name, "query", query, (3,))
        if seqlens_k is None or total_sequence_length is None:
            raise ValueError(f"{name}: seqlens_k and total_sequence_length are required")
        if q_norm_weight is not None or k_norm_weight is not None:
            raise NotImplementedError(f"{name}: q_norm_weight/k_norm_weight are not supported")
        dt = query.dtype
        b, s, d = query.shape
        qc = _compute(query)
        if key is None:
            if value is not None:
                raise ValueError(f"{name}: value given without key")
            if d % (n + 2 * nkv):
                raise ValueError(f"{name}: packed QKV width {d} is not a multiple of num_heads + 2 * kv_num_heads")
            h = d // (n + 2 * nkv)
            q = _heads(qc[..., :n * h], n, name, "query")
            k = _heads(qc[..., n * h:(n + nkv) * h], nkv, name, "key")
            v = _heads(qc[..., (n + nkv) * h:], nkv, name, "value")
        else:
            if value is None:
                raise ValueError(f"{name}: key given without value")
            _float_input(name, "key", key)
            _float_input(name, "value", value)
            h = d // n
            q = _heads(qc, n, name, "query")
            k = _heads(_compute(key), nkv, name, "key")
            v = _heads(_compute(value), nkv, name, "value")
        seqlens = np.asarray(seqlens_k).astype(np.int64).reshape(-1)
        if seqlens.shape[0] != b:
            raise ValueError(f"{name}: seqlens_k must have batch_size ({b}) entries, got {seqlens.shape}")
        total = int(np.asarray(total_sequence_length).reshape(-1)[0])
        past_buf = 0
        if past_key is not None:
            if past_value is None:
                raise ValueError(f"{name}: past_key and past_value must be given together")
            for pn, p in (("past_key", past_key), ("past_value", past_value)):
                if p.ndim != 4 or p.shape[0] != b or p.shape[1] != nkv or p.shape[3] != h:
                    raise ValueError(f"{name}: {pn} must have shape ({b}, {nkv}, past_len, {h}), got {p.shape}")
            past_buf = past_key.shape[2]
        first_prompt = past_buf == 0 or s == total
        # Each batch entry's past length; a first prompt starts at 0 (right-padded prompts too).
        lengths = seqlens + 1
        pasts = np.zeros(b, dtype=np.int64) if first_prompt else lengths - s
        if (pasts < 0).any():
            raise ValueError(f"{name}: seqlens_k {seqlens.tolist()} is shorter than the {s} new tokens")
        if do_rotary:
            if cos_cache is None or sin_cache is None:
                raise ValueError(f"{name}: do_rotary=1 needs cos_cache and sin_cache")
            if position_ids is not None:
                pos = np.asarray(position_ids).astype(np.int64).reshape(b, s)
            else:
                pos = pasts[:, None] + np.arange(s)[None, :]
            cos, sin = _rotary_tables(name, cos_cache, sin_cache, pos)
            q = _rotate(q, cos[:, None], sin[:, None], interleaved)
            k = _rotate(k, cos[:, None], sin[:, None], interleaved)
        present_len = max(past_buf, total)
        present_k = np.zeros((b, nkv, present_len, h), dtype=np.float32 if dt != np.float64 else dt)
        present_v = np.zeros_like(present_k)
        for i in range(b):
            p = int(pasts[i])
            if p:
                present_k[i, :, :p] = past_key[i, :, :p]
                present_v[i, :, :p] = past_value[i, :, :p]
            end = min(p + s, present_len)
            present_k[i, :, p:end] = k[i, :, :end - p]
            present_v[i, :, p:end] = v[i, :, :end - p]
        # Key j is visible to query i of entry b when j < past_b + i + 1 (causal) or j < length_b,
        # and, with a local window, j >= that end minus the window.
        cols = np.arange(present_len)[None, None, :]
        if causal:
            # Padding rows of a right-padded prompt still read only the entry's real keys.
            end = np.minimum(pasts[:, None, None] + np.arange(s)[None, :, None] + 1, lengths[:, None, None])
        else:
            end = np.broadcast_to(lengths[:, None, None], (b, s, 1))
        visible = cols < end
        if window > 0:
            visible &= cols >= end - window
        additive = np.where(visible, np.float32(0), np.float32(-np.inf))[:, None]
        if attention_bias is not None:
            _float_input(name, "attention_bias", attention_bias)
            ab = attention_bias.astype(np.float32)
            if ab.shape[-1] < present_len:
                ab = np.concatenate(
                    (ab, np.zeros(ab.shape[:-1] + (present_len - ab.shape[-1],), np.float32)), axis=-1
                )
            additive = additive + ab[..., :present_len]
        sink = None
        if head_sink is not None:
            sink = np.asarray(head_sink, dtype=np.float32).reshape(n)
        elif smooth:
            sink = np.zeros(n, dtype=np.float32)
        scale = float(scale_attr) if scale_attr else 1.0 / np.sqrt(h)
        y, qk = _attend(q, present_k, present_v, scale, additive, softcap=softcap, sink=sink, want_qk=qk_mode)
        out = _merge_heads(y).astype(dt, copy=False)
        if qk is not None:
            qk = qk[..., :total].astype(dt, copy=False)
        return out, present_k.astype(dt, copy=False), present_v.astype(dt, copy=False), qk

    return run
