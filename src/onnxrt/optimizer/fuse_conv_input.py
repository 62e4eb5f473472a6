"""Fold per-channel affine ops on a Conv's input into the Conv (EXTENDED).

``Mul / Div / Add / Sub (c) ... -> Conv``: a chain of such ops on the Conv's input X, each ``c`` a
constant per *input* channel or a single element and each intermediate read by the next op alone, is
one affine map ``a * t + b`` of the value ``t`` it starts from. ``a`` scales the weight's input
channels (zero padding stays zero); ``b`` goes into the bias (``W . b`` per output channel) where the
Conv pads nothing, else stays as one Add of ``b / a`` on ``t`` before it (a padded border must keep
reading zeros). PP-OCR writes ``x * clip(x + 3, 0, 6) / 6`` and then a learnable scalar affine before
most of its convs: the Div, Mul and Add were three of the six passes between two convs.

The chain may start at another Conv's output read by nothing else, and where the Conv pads nothing
that Conv's bias joins the shift: a bias is one more per-channel Add. ShuffleNet's depthwise conv then
hands its output to the grouped 1x1 conv after it without a pass adding its bias.

It runs after the other EXTENDED fusions that end in such ops (GELU's ``* 0.5``, a LayerNorm's
``* gamma + beta``), so that it never takes an op they need, and before the activation fusion turns
the Conv into a FusedConv. The weight and bias must be constants; the new ones are new initializers.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir
from onnxrt.optimizer.fuse_conv import conv_params, per_channel, with_bias, with_inputs


def fuse_conv_input_affine(model: ir.Model) -> int:
    graph = model.graph
    return sum(_fold_input_affine(graph, node) is not None
               for node in _ir.live_nodes(graph) if _ir.is_op(node, "Conv"))


def _input_affine_step(value: ir.Value, reader: ir.Node, rank: int, channels: int,
                       dtype: np.dtype) -> tuple[ir.Node, ir.Value, np.ndarray] | None:
    """(the node, its running input, its constant as a per-channel float64 vector) when ``value``,
    read by ``reader`` alone, is a Mul, Div, Add or Sub of a value by a constant per channel
    (``value op c``; ``c op value`` only for Mul and Add; no zero divisor)."""
    node = value.producer()
    if node is None or _ir.single_consumer(value) is not reader or len(node.inputs) != 2:
        return None
    if not any(_ir.is_op(node, op) for op in ("Mul", "Div", "Add", "Sub")):
        return None
    a, b = node.inputs
    for running, other in ((a, b), (b, a)) if node.op_type in ("Mul", "Add") else ((a, b),):
        c = None if other is running or other is None else _ir.const_array(other)
        if c is None or c.dtype != dtype or _ir.rank(running) != rank:
            continue
        vec = per_channel(c, channels, rank)  # also: c does not broadcast the value to a larger shape
        if vec is not None and not (node.op_type == "Div" and not np.all(vec)):
            return node, running, vec.astype(np.float64)
    return None


def _fold_input_affine(graph: ir.Graph, conv: ir.Node) -> ir.Node | None:
    """Fold the chain of per-input-channel Mul/Div/Add/Sub ops before ``conv`` into it; returns the
    Conv node now in the graph, or None when there is nothing to fold.

    The chain is one affine map ``a * t + b`` per input channel of the value ``t`` it starts from.
    The scale ``a`` goes into the weight's input channels; the shift ``b`` into the bias (``W . b``
    per output channel) when the Conv pads nothing, else it stays as one Add of ``b / a`` on ``t``
    before the scaled Conv (a padded border must keep reading zeros)."""
    x = conv.inputs[0]
    if x is None or x.producer() is None or x.producer().op_type not in ("Mul", "Div", "Add", "Sub", "Conv"):
        return None  # before reading the weights: most Convs read something else
    params = conv_params(conv)
    group = int(_ir.attr(conv, "group", 1) or 1)
    if params is None or params[0].shape[0] % group:
        return None
    W, B = params
    M, Cg = W.shape[:2]
    chain = []  # (node, its running input, vector), the Conv's nearest first
    reader, value = conv, x
    while (step := _input_affine_step(value, reader, W.ndim, Cg * group, W.dtype)) is not None:
        chain.append(step)
        reader, value = step[0], step[1]
    pads = _ir.attr(conv, "pads", None) or []
    padded = any(pads) or _ir.attr(conv, "auto_pad", "NOTSET") not in ("NOTSET", "VALID")  # onnx_ir gives str
    source = None if padded else _biased_conv(value, reader, Cg * group, W.dtype)
    if not chain and source is None:
        return None
    scale, shift = np.ones(Cg * group), np.zeros(Cg * group)
    if source is not None:
        shift = _ir.const_array(source.inputs[2]).astype(np.float64)  # the chain's value t is conv + bias
    for node, _, vec in reversed(chain):
        if node.op_type == "Mul":
            scale, shift = scale * vec, shift * vec
        elif node.op_type == "Div":
            scale, shift = scale / vec, shift / vec
        else:
            shift = shift + vec if node.op_type == "Add" else shift - vec
    keep_shift = padded and np.any(shift)
    if keep_shift and (len(chain) == 1 or not np.all(scale)):
        return None  # one Add for one Add, or a shift that a zero scale cannot carry
    grouped = (group, M // group, Cg) + W.shape[2:]  # W's output channels by group, then its input channels
    per_input = (group, 1, Cg) + (1,) * (W.ndim - 2)
    old_values = [v for v in conv.inputs[1:] if v is not None] + [v for n, _, _ in chain for v in n.inputs]
    t = value
    if source is not None:
        old_values.append(source.inputs[2])
        t = with_inputs(graph, source, list(source.inputs[:2])).outputs[0]
    name = conv.name or "conv"
    if keep_shift:
        shift_c = shift / scale
        shift_c = shift_c[:1] if np.all(shift_c == shift_c[0]) else shift_c.reshape((Cg * group,) + (1,) * (W.ndim - 2))
        add = _ir.new_node(graph, "", "Add", [t, _ir.add_initializer(graph, shift_c.astype(W.dtype), name + "_shift")],
                           name_hint=name + "_input_shift", before=conv)
        _ir.copy_type(x, add.outputs[0])
        t = add.outputs[0]
    elif np.any(shift):
        # every output reads each weight once, always inside the image (no padding): W . b per output
        # (a matrix-vector product per group: a reduction over a 1x1 kernel's unit axes costs 3x more)
        taps = W.reshape(group, M // group, Cg, -1)
        w_sum = taps[..., 0].astype(np.float64) if taps.shape[3] == 1 else taps.sum(axis=3, dtype=np.float64)
        w_dot_b = np.matmul(w_sum, shift.reshape(group, Cg, 1))
        B2 = (B.astype(np.float64) + w_dot_b.reshape(M)).astype(W.dtype)
        conv = with_bias(graph, conv, _ir.add_initializer(graph, B2, name + "_B"))
    if np.any(scale != 1):
        work = np.promote_types(W.dtype, np.float32)
        W2 = W.astype(work, copy=False).reshape(grouped) * scale.astype(work).reshape(per_input)
        conv.replace_input_with(1, _ir.add_initializer(graph, W2.reshape(W.shape).astype(W.dtype, copy=False),
                                                       name + "_W"))
    conv.replace_input_with(0, t)
    for node, _, _ in chain:  # nearest first: each one's output has no reader left when it goes
        graph.remove(node, safe=True)
    _ir.drop_unused_initializers(graph, old_values)
    return conv


def _biased_conv(value: ir.Value, reader: ir.Node, channels: int, dtype: np.dtype) -> ir.Node | None:
    """The plain Conv producing ``value``, read by ``reader`` alone, when its bias is a constant vector
    of ``channels`` values of ``dtype`` (the bias can move to where ``value`` is read)."""
    node = value.producer()
    if not _ir.is_op(node, "Conv") or _ir.single_consumer(value) is not reader or len(node.inputs) < 3:
        return None
    bias = None if node.inputs[2] is None else _ir.const_array(node.inputs[2])
    if bias is None or bias.dtype != dtype or bias.shape != (channels,):
        return None
    return node

