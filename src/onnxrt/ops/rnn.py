"""Recurrent networks: RNN, GRU, LSTM (opsets 1/3/7/14; 22 is a type-only bump).

Layout of the work: the input projection X W^T + Wb (+ Rb where the gate allows) is one
GEMM over every time step and both directions; the time loop then only does the small
h R^T matmul and the gate arithmetic. Both directions advance together, stacked on a
leading axis. The reverse direction is handled by reordering each batch entry's valid
prefix (its own ``sequence_lens``) so that step t of the loop is that entry's t-th input
from the end, and the produced Y is reordered back the same way.

Semantics follow onnxruntime where the spec is loose: ``clip`` bounds every gate's
pre-activation (after bias and peephole terms), ``input_forget`` couples the forget gate to
the input gate (f = 1 - i), activation alpha/beta values are consumed in order by the
activations that take them, and steps past an entry's sequence length leave Y at zero and
the hidden/cell state unchanged.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from onnxrt.ops.registry import KernelContext, op_factory


def _sigmoid(x, a, b):
    # 0.5 * (1 + tanh(x / 2)) is exact and never overflows
    y = x * x.dtype.type(0.5)
    np.tanh(y, out=y)
    y += 1
    y *= 0.5
    return y


def _hard_sigmoid(x, a, b):
    return np.clip(a * x + b, 0, 1)


def _leaky_relu(x, a, b):
    return np.where(x >= 0, x, a * x)


def _thresholded_relu(x, a, b):
    return np.where(x > a, x, 0).astype(x.dtype, copy=False)


def _elu(x, a, b):
    return np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0)))


def _softplus(x, a, b):
    return np.logaddexp(x, 0).astype(x.dtype, copy=False)


# lower-case name -> (function(x, alpha, beta), uses alpha, uses beta, default alpha, default beta)
_ACTIVATIONS: dict[str, tuple[Callable, bool, bool, float, float]] = {
    "relu": (lambda x, a, b: np.maximum(x, 0), False, False, 0.0, 0.0),
    "tanh": (lambda x, a, b: np.tanh(x), False, False, 0.0, 0.0),
    "sigmoid": (_sigmoid, False, False, 0.0, 0.0),
    "affine": (lambda x, a, b: a * x + b, True, True, 1.0, 0.0),
    "leakyrelu": (_leaky_relu, True, False, 0.01, 0.0),
    "thresholdedrelu": (_thresholded_relu, True, False, 1.0, 0.0),
    "scaledtanh": (lambda x, a, b: a * np.tanh(b * x), True, True, 1.0, 1.0),
    "hardsigmoid": (_hard_sigmoid, True, True, 0.2, 0.5),
    "elu": (_elu, True, False, 1.0, 0.0),
    "softsign": (lambda x, a, b: x / (1 + np.abs(x)), False, False, 0.0, 0.0),
    "softplus": (_softplus, False, False, 0.0, 0.0),
}


def _make_activations(op_name: str, attrs: dict, per_dir: int, num_dir: int, defaults: list[str]):
    """Per direction, the list of ``per_dir`` activation callables f(x) (alpha/beta bound)."""
    names = attrs.get("activations") or defaults
    alphas = list(attrs.get("activation_alpha") or [])
    betas = list(attrs.get("activation_beta") or [])
    if len(names) >= per_dir * num_dir:
        names = list(names[: per_dir * num_dir])
    elif len(names) == per_dir:
        names = list(names) * num_dir
    else:
        raise ValueError(
            f"{op_name}: 'activations' must list {per_dir} function(s) per direction "
            f"({per_dir * num_dir} in all), got {len(names)}: {list(names)}"
        )
    fns = []
    ai = bi = 0
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"{op_name}: unsupported activation '{name}'; expected one of {sorted(_ACTIVATIONS)}")
        fn, uses_a, uses_b, da, db = _ACTIVATIONS[key]
        alpha, beta = da, db
        if uses_a and ai < len(alphas):
            alpha, ai = alphas[ai], ai + 1
        if uses_b and bi < len(betas):
            beta, bi = betas[bi], bi + 1
        fns.append((fn, key, alpha, beta))
    per_direction = [fns[d * per_dir:(d + 1) * per_dir] for d in range(num_dir)]
    return per_direction


def _bind(entry, dtype):
    fn, _, alpha, beta = entry
    a, b = dtype.type(alpha), dtype.type(beta)
    return lambda x: fn(x, a, b)


class _Common:
    """Attribute parsing and input handling shared by the three ops."""

    def __init__(self, ctx: KernelContext, op_name: str, gates: int, per_dir: int, defaults: list[str]):
        a = ctx.attrs
        self.op = op_name
        self.gates = gates
        direction = a.get("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise ValueError(f"{op_name}: direction must be forward, reverse or bidirectional, got {direction!r}")
        self.direction = direction
        self.num_dir = 2 if direction == "bidirectional" else 1
        self.hidden_size = a.get("hidden_size")
        clip = a.get("clip")
        if clip is not None and clip <= 0:
            raise ValueError(f"{op_name}: clip must be positive, got {clip}")
        self.clip = clip
        self.layout = int(a.get("layout", 0))
        if self.layout not in (0, 1):
            raise ValueError(f"{op_name}: layout must be 0 or 1, got {self.layout}")
        self.acts = _make_activations(op_name, a, per_dir, self.num_dir, defaults)
        self.reverse_flags = [direction == "reverse"] if self.num_dir == 1 else [False, True]
        consts = list(ctx.const_inputs) + [None] * 4
        # Constant weights: their re-laid-out forms are made once per compute dtype (see _weights).
        self._const_wrb = tuple(consts[1:4])
        self._weights_cache: dict = {}
        self._acts_cache: dict = {}

    def _weights(self, W, R, B, cdt, D, G, H, input_size):
        """(Wt (input, D*G*H), Rt (D, H, G*H) C-contiguous, bias (D, 2, G*H) or None, the two biases
        summed (D, 1, 1, G*H) or None), cached for constant weights."""
        cw, cr, cb = self._const_wrb
        cached = W is cw and R is cr and B is cb and cw is not None and cr is not None
        if cached:
            hit = self._weights_cache.get(cdt)
            if hit is not None:
                return hit
        Wt = W.astype(cdt, copy=False).transpose(2, 0, 1).reshape(input_size, D * G * H)
        Rt = R.astype(cdt, copy=False).transpose(0, 2, 1)  # (D, H, G*H)
        if cached:  # one copy, then every step's matmul reads it in order
            Rt = np.ascontiguousarray(Rt)
        bias = B.astype(cdt, copy=False).reshape(D, 2, G * H) if B is not None else None
        summed = None if bias is None else (bias[:, 0] + bias[:, 1])[:, None, None, :]
        out = (Wt, Rt, bias, summed)
        if cached:
            self._weights_cache[cdt] = out
        return out

    def prepare(self, X, W, R, B, sequence_lens, initial_h):
        op, G = self.op, self.gates
        for n, v in (("X", X), ("W", W), ("R", R)):
            if not isinstance(v, np.ndarray) or v.dtype.kind != "f":
                raise TypeError(f"{op}: input '{n}' must be a float tensor, got {getattr(v, 'dtype', type(v))}")
            if v.ndim != 3:
                raise ValueError(f"{op}: input '{n}' must be 3-D, got shape {v.shape}")
        dtype = X.dtype
        cdt = np.dtype(np.float32) if dtype == np.float16 else dtype
        x = X if self.layout == 0 else X.transpose(1, 0, 2)  # (seq, batch, input)
        seq, batch, input_size = x.shape
        D = self.num_dir
        H = R.shape[-1]
        if self.hidden_size is not None and self.hidden_size != H:
            raise ValueError(f"{op}: hidden_size={self.hidden_size} but R has shape {R.shape}")
        if W.shape != (D, G * H, input_size):
            raise ValueError(f"{op}: W must have shape {(D, G * H, input_size)}, got {W.shape}")
        if R.shape != (D, G * H, H):
            raise ValueError(f"{op}: R must have shape {(D, G * H, H)}, got {R.shape}")
        if B is not None and B.shape != (D, 2 * G * H):
            raise ValueError(f"{op}: B must have shape {(D, 2 * G * H)}, got {B.shape}")
        if sequence_lens is not None:
            lens = np.asarray(sequence_lens)
            if lens.dtype.kind not in "iu" or lens.shape != (batch,):
                raise ValueError(
                    f"{op}: sequence_lens must be an int32 tensor of shape ({batch},), got {lens.dtype} {lens.shape}"
                )
            lens = lens.astype(np.int64)
            if lens.size and (lens.min() < 0 or lens.max() > seq):
                raise ValueError(f"{op}: sequence_lens values must lie in [0, {seq}], got {lens.tolist()}")
            if np.all(lens == seq):
                lens = None
        else:
            lens = None
        h0 = self._state(initial_h, "initial_h", D, batch, H, cdt)

        # Input projection for every step and direction in one GEMM: (seq * batch, D * G * H).
        Wt, Rt, bias, summed_bias = self._weights(W, R, B, cdt, D, G, H, input_size)
        xw = (x.astype(cdt, copy=False).reshape(seq * batch, input_size) @ Wt).reshape(seq, batch, D, G * H)
        xw = np.ascontiguousarray(xw.transpose(2, 0, 1, 3))  # (D, seq, batch, G*H)

        # Reverse direction: reorder each entry's valid prefix back to front.
        if lens is None:
            order = None
            active = None
        else:
            t = np.arange(seq).reshape(seq, 1)
            active = t < lens.reshape(1, batch)  # (seq, batch)
            order = np.where(active, lens.reshape(1, batch) - 1 - t, t)  # an involution per column
        cols = np.arange(batch).reshape(1, batch)
        for d, rev in enumerate(self.reverse_flags):
            if rev:
                xw[d] = xw[d][::-1] if order is None else xw[d][order, cols]
        return dict(dtype=dtype, cdt=cdt, seq=seq, batch=batch, H=H, D=D, xw=xw, Rt=Rt, bias=bias,
                    summed_bias=summed_bias, lens=lens, order=order, active=active, cols=cols, h0=h0)

    def _state(self, value, name, D, batch, H, cdt):
        if value is None:
            return np.zeros((D, batch, H), dtype=cdt)
        want = (D, batch, H) if self.layout == 0 else (batch, D, H)
        if value.shape != want:
            raise ValueError(f"{self.op}: {name} must have shape {want}, got {value.shape}")
        v = value if self.layout == 0 else value.transpose(1, 0, 2)
        return np.array(v, dtype=cdt)  # a fresh, writable copy

    def clipped(self, x):
        if self.clip is not None:
            np.clip(x, -self.clip, self.clip, out=x)
        return x

    def bound_acts(self, cdt) -> list[Callable]:
        """Per activation slot, one callable over x (D, batch, n) applying each direction's function."""
        hit = self._acts_cache.get(cdt)
        if hit is None:
            hit = self._acts_cache[cdt] = self._bind_acts(cdt)
        return hit

    def _bind_acts(self, cdt) -> list[Callable]:
        bound: dict[tuple, Callable] = {}
        per_dir = []
        for fns in self.acts:
            row = []
            for entry in fns:
                key = (entry[1], entry[2], entry[3])
                if key not in bound:
                    bound[key] = _bind(entry, cdt)
                row.append(bound[key])
            per_dir.append(row)
        out = []
        for k in range(len(per_dir[0])):
            fns = [row[k] for row in per_dir]
            if all(fn is fns[0] for fn in fns):
                out.append(fns[0])
            else:
                out.append(lambda x, fns=fns: np.stack([fn(x[d]) for d, fn in enumerate(fns)]))
        return out

    def finish(self, p, ys, states):
        """Reorder the reverse direction back, zero padded steps, lay out Y and final states."""
        dtype, order, cols = p["dtype"], p["order"], p["cols"]
        for d, rev in enumerate(self.reverse_flags):
            if rev:
                ys[d] = ys[d][::-1] if order is None else ys[d][order, cols]
        # ys: (D, seq, batch, H)
        if self.layout == 0:
            Y = ys.transpose(1, 0, 2, 3)  # (seq, D, batch, H)
            finals = [s for s in states]
        else:
            Y = ys.transpose(2, 1, 0, 3)  # (batch, seq, D, H)
            finals = [s.transpose(1, 0, 2) for s in states]
        Y = np.ascontiguousarray(Y).astype(dtype, copy=False)
        return (Y, *[np.ascontiguousarray(f).astype(dtype, copy=False) for f in finals])


def lstm_step(g, h, cell, ys, t, active, f, c, input_forget, peep):
    """One LSTM time step from the gate pre-activations ``g`` (D, batch, 4H; gates i, o, f, c).

    ``peep`` is None or (D, 3, 1, H) peepholes (i, o, f); ``f`` the bound activations, ``c`` the
    op's ``_Common``; steps past an entry's sequence length (``active``) keep its state and write 0
    to ``ys[:, t]``. Returns the new (h, cell). Shared by LSTM and com.microsoft DynamicQuantizeLSTM.
    """
    H = h.shape[-1]
    one = g.dtype.type(1)
    if peep is None:  # the three sigmoid-type gates in one call
        iof = f[0](c.clipped(g[..., :3 * H]))
        i, o = iof[..., :H], iof[..., H:2 * H]
        fg = one - i if input_forget else iof[..., 2 * H:]
        c_new = fg * cell + i * f[1](c.clipped(g[..., 3 * H:]))
    else:
        gi, go, gf, gc = g[..., :H], g[..., H:2 * H], g[..., 2 * H:3 * H], g[..., 3 * H:]
        i = f[0](c.clipped(gi + peep[:, 0] * cell))
        fg = one - i if input_forget else f[0](c.clipped(gf + peep[:, 2] * cell))
        c_new = fg * cell + i * f[1](c.clipped(gc))
        o = f[0](c.clipped(go + peep[:, 1] * c_new))
    h_new = o * f[2](c_new)
    mask = None if active is None else active[t][None, :, None]
    h = _step_update(h_new, h, mask)
    cell = _step_update(c_new, cell, mask)
    ys[:, t] = h if mask is None else np.where(mask, h, 0)
    return h, cell


def _step_update(new, old, mask):
    """new where the step is active (mask (batch, 1)), else the old value."""
    return new if mask is None else np.where(mask, new, old)


# -- RNN ---------------------------------------------------------------------------------


@op_factory("RNN", 1, 7, 14)
def rnn(ctx: KernelContext):
    c = _Common(ctx, "RNN", 1, 1, ["Tanh"])

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None):
        p = c.prepare(X, W, R, B, sequence_lens, initial_h)
        cdt, seq, H, D = p["cdt"], p["seq"], p["H"], p["D"]
        xw, Rt, active = p["xw"], p["Rt"], p["active"]
        if p["summed_bias"] is not None:
            xw += p["summed_bias"]
        f = c.bound_acts(cdt)
        h = p["h0"]
        ys = np.zeros((D, seq, p["batch"], H), dtype=cdt)
        for t in range(seq):
            pre = c.clipped(xw[:, t] + np.matmul(h, Rt))
            h_new = f[0](pre)
            mask = None if active is None else active[t][None, :, None]
            h = _step_update(h_new, h, mask)
            ys[:, t] = h if mask is None else np.where(mask, h, 0)
        return c.finish(p, ys, [h])

    return run


# -- GRU ---------------------------------------------------------------------------------


@op_factory("GRU", 1, 3, 7, 14)
def gru(ctx: KernelContext):
    c = _Common(ctx, "GRU", 3, 2, ["Sigmoid", "Tanh"])
    lbr = bool(ctx.attrs.get("linear_before_reset", 0))

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None):
        p = c.prepare(X, W, R, B, sequence_lens, initial_h)
        cdt, seq, H, D = p["cdt"], p["seq"], p["H"], p["D"]
        xw, Rt, active, bias = p["xw"], p["Rt"], p["active"], p["bias"]
        if bias is not None:
            # z, r: both biases fold into the projection; h: Wbh folds, Rbh stays inside (lbr=1) or adds (lbr=0)
            xw[..., : 2 * H] += (bias[:, 0, : 2 * H] + bias[:, 1, : 2 * H])[:, None, None, :]
            xw[..., 2 * H:] += bias[:, 0, 2 * H:][:, None, None, :]
            rbh = bias[:, 1, 2 * H:][:, None, :]  # (D, 1, H)
        else:
            rbh = None
        Rt_zr = np.ascontiguousarray(Rt[:, :, : 2 * H])
        Rt_h = np.ascontiguousarray(Rt[:, :, 2 * H:])
        f = c.bound_acts(cdt)
        one = cdt.type(1)
        h = p["h0"]
        ys = np.zeros((D, seq, p["batch"], H), dtype=cdt)
        for t in range(seq):
            x_t = xw[:, t]
            if lbr:
                hr = np.matmul(h, Rt)  # (D, batch, 3H)
                zr = c.clipped(x_t[..., : 2 * H] + hr[..., : 2 * H])
                zr = f[0](zr)
                z, r = zr[..., :H], zr[..., H:]
                rh = hr[..., 2 * H:] if rbh is None else hr[..., 2 * H:] + rbh
                pre = c.clipped(x_t[..., 2 * H:] + r * rh)
            else:
                zr = c.clipped(x_t[..., : 2 * H] + np.matmul(h, Rt_zr))
                zr = f[0](zr)
                z, r = zr[..., :H], zr[..., H:]
                pre = x_t[..., 2 * H:] + np.matmul(r * h, Rt_h)
                if rbh is not None:
                    pre += rbh
                pre = c.clipped(pre)
            hh = f[1](pre)
            h_new = (one - z) * hh + z * h
            mask = None if active is None else active[t][None, :, None]
            h = _step_update(h_new, h, mask)
            ys[:, t] = h if mask is None else np.where(mask, h, 0)
        return c.finish(p, ys, [h])

    return run


# -- LSTM --------------------------------------------------------------------------------


@op_factory("LSTM", 1, 7, 14)
def lstm(ctx: KernelContext):
    c = _Common(ctx, "LSTM", 4, 3, ["Sigmoid", "Tanh", "Tanh"])
    input_forget = bool(ctx.attrs.get("input_forget", 0))

    cw, cr, cb = c._const_wrb
    one_step_ok = c.num_dir == 1 and c.clip is None and not input_forget and cw is not None and cr is not None
    default_acts = [e[1] for e in c.acts[0]] == ["sigmoid", "tanh", "tanh"]
    stacked_cache: dict = {}

    def stacked_weights(W, R, B, cdt, H):
        """[W; R] transposed as one (input + H, 4H) matrix and the two biases summed, with the i, o, f
        columns halved: one GEMM of [x, h] and one tanh then give every gate, sigmoid(z) being
        0.5 + 0.5 tanh(z / 2) (halving is exact)."""
        hit = stacked_cache.get(cdt)
        if hit is None:  # made from W, R and B themselves: _weights' cache would hold them a second time
            scale = np.ones(4 * H, dtype=cdt)
            scale[:3 * H] = 0.5
            weights = np.concatenate((W[0].T, R[0].T)).astype(cdt, copy=False) * scale
            b = None if B is None else B.astype(cdt, copy=False).reshape(2, 4 * H)
            bias = None if b is None else (b[0] + b[1]) * scale
            hit = stacked_cache[cdt] = (weights, bias)
        return hit

    def one_step(X, W, R, B, initial_h, initial_c):
        """A one-step sequence in one direction with constant weights: the step itself, without the
        general path's per-run layout work (streaming models, silero_vad's decoder, run one step per
        call). None when a shape is off, for the general path to report."""
        cdt = X.dtype
        H = R.shape[-1]
        input_size = X.shape[2]
        batch = X.shape[1 - c.layout]
        if (W.shape != (1, 4 * H, input_size) or R.shape != (1, 4 * H, H) or (c.hidden_size not in (None, H))
                or (B is not None and B.shape != (1, 8 * H))):
            return None
        states = []
        for value in (initial_h, initial_c):
            if value is None:
                states.append(np.zeros((1, batch, H), dtype=cdt))
            elif value.shape != ((1, batch, H) if c.layout == 0 else (batch, 1, H)):
                return None
            else:
                states.append(value.astype(cdt, copy=False).reshape(1, batch, H))
        if default_acts:
            weights, bias = stacked_weights(W, R, B, cdt, H)
            g = np.concatenate((X.reshape(batch, input_size), states[0][0]), axis=1) @ weights
            if bias is not None:
                g += bias
            np.tanh(g, out=g)
            iof = g[:, :3 * H]
            iof *= 0.5
            iof += 0.5
            cell = iof[:, 2 * H:] * states[1][0]
            cell += iof[:, :H] * g[:, 3 * H:]
            h = np.tanh(cell)
            h *= iof[:, H:2 * H]
            ys = h.reshape(1, 1, batch, H).copy()
            h, cell = h.reshape(1, batch, H), cell.reshape(1, batch, H)
        else:
            Wt, Rt, _, summed = c._weights(W, R, B, cdt, 1, 4, H, input_size)
            xw = X.reshape(batch, input_size) @ Wt  # as the general path: projection + biases, then + h Rt
            if summed is not None:
                xw += summed[0, 0]
            g = np.matmul(states[0], Rt)
            g += xw
            ys = np.empty((1, 1, batch, H), dtype=cdt)
            h, cell = lstm_step(g, states[0], states[1], ys, 0, None, c.bound_acts(cdt), c, False, None)
        if c.layout == 0:
            return ys, h, cell
        return ys.reshape(batch, 1, 1, H), h.reshape(batch, 1, H), cell.reshape(batch, 1, H)

    def run(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None):
        if (one_step_ok and W is cw and R is cr and B is cb and P is None and sequence_lens is None
                and type(X) is np.ndarray and X.ndim == 3 and X.shape[c.layout] == 1
                and (X.dtype == np.float32 or X.dtype == np.float64)):
            outputs = one_step(X, W, R, B, initial_h, initial_c)
            if outputs is not None:
                return outputs
        p = c.prepare(X, W, R, B, sequence_lens, initial_h)
        cdt, seq, H, D, batch = p["cdt"], p["seq"], p["H"], p["D"], p["batch"]
        xw, Rt, active = p["xw"], p["Rt"], p["active"]
        if p["summed_bias"] is not None:
            xw += p["summed_bias"]
        cell = c._state(initial_c, "initial_c", D, batch, H, cdt)
        peep = None
        if P is not None:
            if P.shape != (D, 3 * H):
                raise ValueError(f"LSTM: P must have shape {(D, 3 * H)}, got {P.shape}")
            peep = P.astype(cdt, copy=False).reshape(D, 3, 1, H)
        f = c.bound_acts(cdt)
        h = p["h0"]
        ys = np.zeros((D, seq, batch, H), dtype=cdt)
        for t in range(seq):
            g = np.matmul(h, Rt)  # (D, batch, 4H): i, o, f, c
            g += xw[:, t]
            h, cell = lstm_step(g, h, cell, ys, t, active, f, c, input_forget, peep)
        return c.finish(p, ys, [h, cell])

    return run
