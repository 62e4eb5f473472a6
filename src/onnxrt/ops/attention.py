"""Attention family: Attention (23/24/25), RotaryEmbedding (23), LinearAttention (27),
FlexAttention (ai.onnx.preview 1).

Numerics: the arithmetic runs in the inputs' own dtype, in the order the spec's function
body prescribes (scale Q and K by sqrt(scale), QK^T, softcap, add bias, softmax, P V), so
float16/bfloat16 results round the way the reference does. Grouped-query attention is a
reshape of Q to (batch, kv_heads, group * q_len, head) against the un-repeated K/V, so one
batched matmul covers every head with no copy of K or V.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from onnxrt.ops.registry import KernelContext, op_factory

_PRECISION_DTYPES = {
    1: np.dtype(np.float32),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    16: np.dtype(ml_dtypes.bfloat16),
}
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))


def _precision_dtype(op_name: str, value: int | None) -> np.dtype | None:
    if value is None:
        return None
    try:
        return _PRECISION_DTYPES[int(value)]
    except KeyError:
        raise ValueError(
            f"{op_name}: softmax_precision must be one of 1 (FLOAT), 10 (FLOAT16), 11 (DOUBLE), "
            f"16 (BFLOAT16), got {value}"
        ) from None


def _check_float(op_name: str, name: str, x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op_name}: input '{name}' must be a tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{op_name}: input '{name}' must be float16, bfloat16, float or double, got {x.dtype}"
        )
    return x


def _softmax_last(x: np.ndarray, inplace: bool = False) -> np.ndarray:
    """Numerically stable softmax over the last axis; an all -inf row gives zeros, not NaN.

    ``inplace`` overwrites ``x`` (which the caller must own)."""
    m = np.max(x, axis=-1, keepdims=True)
    m[np.isneginf(m)] = 0
    if inplace:
        e = x
        e -= m
    else:
        e = x - m
    np.exp(e, out=e)
    s = np.sum(e, axis=-1, keepdims=True)
    s[s == 0] = 1
    e /= s
    return e


def _split_heads(x: np.ndarray, num_heads: int, op_name: str, name: str) -> np.ndarray:
    """(batch, seq, heads * size) -> (batch, heads, seq, size)."""
    b, s, hidden = x.shape
    if num_heads <= 0 or hidden % num_heads:
        raise ValueError(
            f"{op_name}: the last dimension of '{name}' ({hidden}) must be a positive multiple of "
            f"its number of heads ({num_heads})"
        )
    return x.reshape(b, s, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)


# -- Attention --------------------------------------------------------------------------


@op_factory("Attention", 23, 24, 25)
def attention(ctx: KernelContext):
    name = "Attention"
    a = ctx.attrs
    scale_attr = a.get("scale")
    is_causal = bool(a.get("is_causal", 0))
    q_num_heads = a.get("q_num_heads")
    kv_num_heads = a.get("kv_num_heads")
    softcap = float(a.get("softcap", 0.0) or 0.0)
    mode = int(a.get("qk_matmul_output_mode", 0))
    precision = _precision_dtype(name, a.get("softmax_precision"))
    left = int(a.get("left_window_size", -1))
    right = int(a.get("right_window_size", -1))
    if left < -1 or right < -1:
        raise ValueError(f"{name}: left_window_size/right_window_size must be -1 or >= 0, got {left}/{right}")
    if mode not in (0, 1, 2, 3):
        raise ValueError(f"{name}: qk_matmul_output_mode must be 0, 1, 2 or 3, got {mode}")
    if softcap < 0:
        raise ValueError(f"{name}: softcap must be >= 0, got {softcap}")
    windowed = left >= 0 or right >= 0
    want_qk = ctx.num_outputs > 3 and bool(ctx.output_names[3])

    def run(Q, K, V, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None):
        for n, x in (("Q", Q), ("K", K), ("V", V)):
            _check_float(name, n, x)
        if not Q.ndim == K.ndim == V.ndim or Q.ndim not in (3, 4):
            raise ValueError(
                f"{name}: Q, K and V must all be 3-D or all 4-D, got shapes {Q.shape}, {K.shape}, {V.shape}"
            )
        dt = Q.dtype
        is3d = Q.ndim == 3
        if is3d:
            if q_num_heads is None or kv_num_heads is None:
                raise ValueError(f"{name}: q_num_heads and kv_num_heads are required for 3-D Q, K, V")
            Q4 = _split_heads(Q, q_num_heads, name, "Q")
            K4 = _split_heads(K, kv_num_heads, name, "K")
            V4 = _split_heads(V, kv_num_heads, name, "V")
        else:
            Q4, K4, V4 = Q, K, V
            if q_num_heads is not None and q_num_heads != Q.shape[1]:
                raise ValueError(f"{name}: q_num_heads={q_num_heads} but 4-D Q has {Q.shape[1]} heads")
            if kv_num_heads is not None and kv_num_heads != K.shape[1]:
                raise ValueError(f"{name}: kv_num_heads={kv_num_heads} but 4-D K has {K.shape[1]} heads")
        batch, hq, sq, dq = Q4.shape
        if K4.shape[0] != batch or V4.shape[0] != batch:
            raise ValueError(f"{name}: batch sizes differ: Q {Q.shape}, K {K.shape}, V {V.shape}")
        if K4.shape[3] != dq:
            raise ValueError(f"{name}: Q head size {dq} != K head size {K4.shape[3]}")
        if K4.shape[1] != V4.shape[1] or K4.shape[2] != V4.shape[2]:
            raise ValueError(f"{name}: K {K4.shape} and V {V4.shape} must agree on heads and sequence length")

        if (past_key is None) != (past_value is None):
            raise ValueError(f"{name}: past_key and past_value must be given together")
        if past_key is not None:
            if nonpad_kv_seqlen is not None:
                raise ValueError(f"{name}: nonpad_kv_seqlen cannot be combined with past_key/past_value")
            for n, p, cur in (("past_key", past_key, K4), ("past_value", past_value, V4)):
                if p.ndim != 4 or p.shape[0] != cur.shape[0] or p.shape[1] != cur.shape[1] or p.shape[3] != cur.shape[3]:
                    raise ValueError(
                        f"{name}: {n} must have shape (batch, kv_heads, past_len, head_size) = "
                        f"({cur.shape[0]}, {cur.shape[1]}, *, {cur.shape[3]}), got {p.shape}"
                    )
            K4 = np.concatenate((past_key, K4.astype(past_key.dtype, copy=False)), axis=2)
            V4 = np.concatenate((past_value, V4.astype(past_value.dtype, copy=False)), axis=2)
            past_len = past_key.shape[2]
        else:
            past_len = 0
        present_key, present_value = K4, V4
        hkv, skv = K4.shape[1], K4.shape[2]
        if hq % hkv:
            raise ValueError(f"{name}: q heads ({hq}) must be a multiple of kv heads ({hkv})")
        group = hq // hkv

        # Scaled scores, (batch, hq, sq, skv), computed as one batched matmul per kv head group.
        scale = scale_attr if scale_attr is not None else 1.0 / np.sqrt(dq)
        sqrt_scale = dt.type(np.sqrt(scale))
        Qs = Q4 * sqrt_scale
        Ks = K4 * sqrt_scale
        scores = np.matmul(Qs.reshape(batch, hkv, group * sq, dq), Ks.transpose(0, 1, 3, 2))
        # numpy's matmul returns float32 for bfloat16 operands: round back as the spec's MatMul does.
        scores = scores.reshape(batch, hq, sq, skv).astype(dt, copy=False)
        raw_scores = scores
        if softcap > 0:
            scores = np.tanh(scores / softcap) * softcap

        # Additive bias: the float mask plus -inf where causal/window/padding rules forbid a key.
        bias = _attention_bias(
            name, dt, attn_mask, batch, hq, sq, skv, past_len, nonpad_kv_seqlen, is_causal, left, right, windowed
        )
        # Work in place on the score buffer unless an intermediate is the requested qk output.
        keep = mode if want_qk else -1
        if bias is None:
            qk_bias = scores
        elif keep in (0, 1) and (scores is raw_scores or keep == 1):
            qk_bias = scores + bias
        else:
            scores += bias
            qk_bias = scores
        if precision is not None and precision != dt:
            logits, owned = qk_bias.astype(precision), True
        else:
            logits, owned = qk_bias, keep not in (0, 1, 2) or (keep == 0 and qk_bias is not raw_scores)
        probs = _softmax_last(logits, inplace=owned)
        if bias is not None:
            dead = np.isneginf(np.max(bias, axis=-1, keepdims=True))
            if dead.any():
                probs = np.where(dead, probs.dtype.type(0), probs)

        qk_out = None
        if want_qk:
            qk_out = (raw_scores, scores, qk_bias, probs)[mode]
            if mode == 1 and softcap <= 0:
                qk_out = raw_scores
            qk_out = qk_out.astype(dt, copy=False)

        probs = probs.astype(dt, copy=False)
        y = np.matmul(probs.reshape(batch, hkv, group * sq, skv), V4)
        dv = V4.shape[3]
        y = y.reshape(batch, hq, sq, dv)
        if is3d:
            y = y.transpose(0, 2, 1, 3).reshape(batch, sq, hq * dv)
        return y.astype(dt, copy=False), present_key, present_value, qk_out

    return run


def _attention_bias(name, dt, attn_mask, batch, hq, sq, skv, past_len, nonpad, is_causal, left, right, windowed):
    """The additive attention bias in dtype ``dt``, broadcastable to (batch, hq, sq, skv); None if zero."""
    neg_inf = dt.type(-np.inf)
    zero = dt.type(0)
    mask_bias = None
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        if m.ndim < 1 or m.ndim > 4:
            raise ValueError(f"{name}: attn_mask must have rank 1 to 4, got shape {m.shape}")
        if m.shape[-1] > skv:
            raise ValueError(
                f"{name}: attn_mask's last dimension ({m.shape[-1]}) exceeds the key sequence length ({skv})"
            )
        target = (batch, hq, sq, skv)[4 - m.ndim:]
        for have, want in zip(m.shape[:-1], target[:-1]):
            if have not in (1, want):
                raise ValueError(
                    f"{name}: attn_mask shape {m.shape} does not broadcast to (batch, q_heads, q_len, kv_len) = "
                    f"{(batch, hq, sq, skv)}"
                )
        if m.dtype == np.bool_:
            mask_bias = np.where(m, zero, neg_inf)
        else:
            mask_bias = m.astype(dt, copy=False)
        pad = skv - m.shape[-1]
        if pad:
            mask_bias = np.concatenate(
                (mask_bias, np.full(mask_bias.shape[:-1] + (pad,), neg_inf, dtype=dt)), axis=-1
            )

    allowed = None  # boolean, (sq, skv) or (batch, 1, sq, skv)
    if is_causal or windowed or nonpad is not None:
        if nonpad is not None:
            nonpad = np.asarray(nonpad)
            if nonpad.shape != (batch,) or nonpad.dtype.kind not in "iu":
                raise ValueError(
                    f"{name}: nonpad_kv_seqlen must be an int64 tensor of shape ({batch},), got "
                    f"{nonpad.dtype} {nonpad.shape}"
                )
            offset = (nonpad.astype(np.int64) - sq).reshape(batch, 1, 1, 1)
        else:
            offset = past_len
        i = np.arange(sq).reshape(sq, 1)
        j = np.arange(skv).reshape(1, skv)
        diff = (i + offset) - j  # query position minus key position
        if is_causal:
            allowed = diff >= 0
        if windowed:
            win = np.ones(np.shape(diff), dtype=bool)
            if left >= 0:
                win &= diff <= left
            if right >= 0:
                win &= -diff <= right
            allowed = win if allowed is None else allowed & win
        if nonpad is not None:
            pad_ok = j.reshape(1, 1, 1, skv) < nonpad.reshape(batch, 1, 1, 1)
            allowed = pad_ok if allowed is None else allowed & pad_ok
    if allowed is None:
        return mask_bias
    struct = np.where(allowed, zero, neg_inf)
    return struct if mask_bias is None else mask_bias + struct


# -- RotaryEmbedding --------------------------------------------------------------------


@op_factory("RotaryEmbedding", 23)
def rotary_embedding(ctx: KernelContext):
    name = "RotaryEmbedding"
    interleaved = bool(ctx.attrs.get("interleaved", 0))
    rot_attr = int(ctx.attrs.get("rotary_embedding_dim", 0) or 0)
    num_heads = ctx.attrs.get("num_heads")

    def run(X, cos_cache, sin_cache, position_ids=None):
        _check_float(name, "X", X)
        if X.ndim == 4:
            x = X  # (batch, heads, seq, head_size)
            batch, _, seq, head = X.shape
            head_axis = 1
        elif X.ndim == 3:
            if not num_heads:
                raise ValueError(f"{name}: num_heads is required for a 3-D input X {X.shape}")
            batch, seq, hidden = X.shape
            if hidden % num_heads:
                raise ValueError(f"{name}: hidden size {hidden} of X is not a multiple of num_heads={num_heads}")
            head = hidden // num_heads
            x = X.reshape(batch, seq, num_heads, head)
            head_axis = 2
        else:
            raise ValueError(f"{name}: X must be 3-D or 4-D, got shape {X.shape}")
        rot = rot_attr or head
        if rot > head or rot % 2:
            raise ValueError(f"{name}: rotary_embedding_dim ({rot}) must be even and <= head size ({head})")
        half = rot // 2
        if position_ids is not None:
            pos = np.asarray(position_ids)
            if pos.dtype.kind not in "iu":
                raise TypeError(f"{name}: position_ids must be an integer tensor, got {pos.dtype}")
            if cos_cache.ndim != 2 or sin_cache.shape != cos_cache.shape:
                raise ValueError(
                    f"{name}: with position_ids, cos_cache and sin_cache must be 2-D (max_pos, rot/2) and equal, "
                    f"got {cos_cache.shape} and {sin_cache.shape}"
                )
            if pos.size and (pos.min() < 0 or pos.max() >= cos_cache.shape[0]):
                raise ValueError(
                    f"{name}: position_ids must lie in [0, {cos_cache.shape[0]}), got values in "
                    f"[{pos.min()}, {pos.max()}]"
                )
            cos = cos_cache[pos]
            sin = sin_cache[pos]
        else:
            cos, sin = cos_cache, sin_cache
        if cos.shape != (batch, seq, half) or sin.shape != (batch, seq, half):
            raise ValueError(
                f"{name}: cos/sin (after position_ids lookup) must have shape (batch, seq, rot/2) = "
                f"{(batch, seq, half)}, got {cos.shape} and {sin.shape}"
            )
        cos = np.expand_dims(cos, head_axis)
        sin = np.expand_dims(sin, head_axis)
        if interleaved:
            x1, x2 = x[..., 0:rot:2], x[..., 1:rot:2]
        else:
            x1, x2 = x[..., :half], x[..., half:rot]
        real = cos * x1 - sin * x2
        imag = sin * x1 + cos * x2
        out = x.copy()
        if interleaved:
            out[..., 0:rot:2] = real
            out[..., 1:rot:2] = imag
        else:
            out[..., :half] = real
            out[..., half:rot] = imag
        return out.reshape(X.shape)

    return run


# -- LinearAttention --------------------------------------------------------------------


@op_factory("LinearAttention", 27)
def linear_attention(ctx: KernelContext):
    name = "LinearAttention"
    a = ctx.attrs
    rule = a.get("update_rule") or "gated_delta"
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise ValueError(f"{name}: update_rule must be 'linear', 'gated', 'delta' or 'gated_delta', got {rule!r}")
    hq = a.get("q_num_heads")
    hkv = a.get("kv_num_heads")
    if hq is None or hkv is None:
        raise ValueError(f"{name}: q_num_heads and kv_num_heads are required")
    if hq <= 0 or hkv <= 0 or hq % hkv:
        raise ValueError(f"{name}: q_num_heads ({hq}) must be a positive multiple of kv_num_heads ({hkv})")
    scale_attr = float(a.get("scale", 0.0) or 0.0)
    gated = rule in ("gated", "gated_delta")
    delta = rule in ("delta", "gated_delta")
    group = hq // hkv
    f32 = np.float32

    def run(query, key, value, past_state=None, decay=None, beta=None):
        for n, x in (("query", query), ("key", key), ("value", value)):
            _check_float(name, n, x)
            if x.ndim != 3:
                raise ValueError(f"{name}: {n} must be 3-D (batch, seq, heads * size), got shape {x.shape}")
        if gated != (decay is not None):
            raise ValueError(f"{name}: update_rule {rule!r} {'requires' if gated else 'forbids'} the decay input")
        if delta != (beta is not None):
            raise ValueError(f"{name}: update_rule {rule!r} {'requires' if delta else 'forbids'} the beta input")
        b, t, _ = query.shape
        if key.shape[:2] != (b, t) or value.shape[:2] != (b, t):
            raise ValueError(f"{name}: query {query.shape}, key {key.shape}, value {value.shape} disagree on (batch, seq)")
        q = _split_heads(query, hq, name, "query").astype(f32)  # (b, hq, t, dk)
        k = _split_heads(key, hkv, name, "key").astype(f32)  # (b, hkv, t, dk)
        v = _split_heads(value, hkv, name, "value").astype(f32)  # (b, hkv, t, dv)
        dk, dv = q.shape[3], v.shape[3]
        if k.shape[3] != dk:
            raise ValueError(f"{name}: query head size {dk} != key head size {k.shape[3]}")
        if decay is not None:
            if decay.ndim != 3 or decay.shape[:2] != (b, t) or decay.shape[2] not in (hkv, hkv * dk):
                raise ValueError(
                    f"{name}: decay must have shape ({b}, {t}, {hkv}) or ({b}, {t}, {hkv * dk}), got {decay.shape}"
                )
            g = decay.astype(f32).reshape(b, t, hkv, -1).transpose(0, 2, 1, 3)  # (b, hkv, t, 1|dk)
            g = np.exp(g)[..., None]  # (b, hkv, t, 1|dk, 1)
        if beta is not None:
            if beta.ndim != 3 or beta.shape[:2] != (b, t) or beta.shape[2] not in (hkv, 1):
                raise ValueError(f"{name}: beta must have shape ({b}, {t}, {hkv}) or ({b}, {t}, 1), got {beta.shape}")
            be = beta.astype(f32).transpose(0, 2, 1)[..., None]  # (b, hkv|1, t, 1)
        if past_state is not None:
            if past_state.shape != (b, hkv, dk, dv):
                raise ValueError(f"{name}: past_state must have shape {(b, hkv, dk, dv)}, got {past_state.shape}")
            state_dtype = past_state.dtype
            state = past_state.astype(f32)  # a fresh copy
        else:
            state_dtype = query.dtype
            state = np.zeros((b, hkv, dk, dv), dtype=f32)
        scale = f32(scale_attr if scale_attr != 0.0 else 1.0 / np.sqrt(dk))
        qg = q.reshape(b, hkv, group, t, dk)
        out = np.empty((b, hkv, group, t, dv), dtype=f32)
        for step in range(t):
            kt = k[:, :, step, :]  # (b, hkv, dk)
            vt = v[:, :, step, :]  # (b, hkv, dv)
            if gated:
                state *= g[:, :, step]
            if delta:
                retrieved = np.matmul(kt[:, :, None, :], state)[:, :, 0, :]  # (b, hkv, dv)
                vt = be[:, :, step] * (vt - retrieved)
            state += kt[:, :, :, None] * vt[:, :, None, :]
            out[:, :, :, step, :] = np.matmul(qg[:, :, :, step, :], state)
        out *= scale
        y = out.reshape(b, hq, t, dv).transpose(0, 2, 1, 3).reshape(b, t, hq * dv)
        return y.astype(query.dtype), state.astype(state_dtype)

    return run


# -- FlexAttention (ai.onnx.preview) ------------------------------------------------------


@op_factory("FlexAttention", 1, domain="ai.onnx.preview")
def flex_attention(ctx: KernelContext):
    name = "FlexAttention"
    a = ctx.attrs
    scale_attr = a.get("scale")
    precision = _precision_dtype(name, a.get("softmax_precision"))
    score_mod = a.get("score_mod")
    prob_mod = a.get("prob_mod")
    captured_order: list[str] = []
    for sub in ctx.subplans:
        for n in sub.captured_names:
            if n not in captured_order:
                captured_order.append(n)
    for label, sub in (("score_mod", score_mod), ("prob_mod", prob_mod)):
        if sub is not None and (len(sub.input_names) != 1 or len(sub.output_names) != 1):
            raise ValueError(
                f"{name}: {label} must have exactly one input and one output, got "
                f"{len(sub.input_names)} and {len(sub.output_names)}"
            )

    def call_mod(sub, label, x, captured_values):
        cap = [captured_values[captured_order.index(n)] for n in sub.captured_names]
        (out,) = sub.run([x], cap)
        out = np.asarray(out)
        if out.shape != x.shape:
            raise ValueError(f"{name}: {label} changed the shape {x.shape} to {out.shape}")
        return out.astype(x.dtype, copy=False)

    def run(Q, K, V, *captured_values):
        for n, x in (("Q", Q), ("K", K), ("V", V)):
            _check_float(name, n, x)
            if x.ndim != 4:
                raise ValueError(f"{name}: {n} must be 4-D (batch, heads, seq, head_size), got shape {x.shape}")
        batch, hq, sq, d = Q.shape
        _, hkv, skv, dk = K.shape
        if dk != d:
            raise ValueError(f"{name}: Q head size {d} != K head size {dk}")
        if V.shape[:3] != K.shape[:3] or K.shape[0] != batch:
            raise ValueError(f"{name}: shapes of Q {Q.shape}, K {K.shape}, V {V.shape} disagree")
        if hq % hkv:
            raise ValueError(f"{name}: q heads ({hq}) must be a multiple of kv heads ({hkv})")
        group = hq // hkv
        dt = Q.dtype
        if precision is not None:
            cdt = precision
        elif dt == np.float64:
            cdt = dt
        else:
            cdt = np.dtype(np.float32)
        scale = scale_attr if scale_attr is not None else 1.0 / np.sqrt(d)
        sqrt_scale = dt.type(np.sqrt(np.float32(scale)))
        scores = np.matmul((Q * sqrt_scale).reshape(batch, hkv, group * sq, d), (K * sqrt_scale).transpose(0, 1, 3, 2))
        scores = scores.reshape(batch, hq, sq, skv).astype(dt, copy=False).astype(cdt, copy=False)
        if score_mod is not None:
            scores = call_mod(score_mod, "score_mod", scores, captured_values)
        m = np.max(scores, axis=-1, keepdims=True)
        e = np.exp(scores - m)
        probs = e / np.sum(e, axis=-1, keepdims=True)
        if prob_mod is not None:
            probs = call_mod(prob_mod, "prob_mod", probs, captured_values)
        y = np.matmul(probs.reshape(batch, hkv, group * sq, skv), V.astype(cdt))
        return y.reshape(batch, hq, sq, V.shape[3]).astype(V.dtype)

    return run
