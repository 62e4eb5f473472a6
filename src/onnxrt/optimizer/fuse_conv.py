"""Fold per-channel affine ops into the Conv before them (BASIC).

* ``Conv -> BatchNormalization`` (inference form, one output): ``W' = W * s``, ``B' = (B - mean) * s + beta``
  with ``s = gamma / sqrt(var + eps)`` per output channel.
* ``Conv -> Mul(c)`` and ``Conv -> Add(c)`` where ``c`` is a constant that broadcasts per output channel
  (shape ``[C,1,..,1]``, ``[1,C,1,..,1]`` or a single element): scale W and B, or shift B.

The Conv's weight (and bias) must be constants, and the Conv output must be read by that one node only.
* ``BatchNormalization -> Mul(c) / Add(c)`` (inference form, ``c`` per channel as above): the Mul/Add
  goes into the normalization's scale and bias (``scale' = scale * c``, ``B' = B * c`` or ``B + c``), as
  Caffe2's DenseNet writes an affine after every BatchNormalization.
* ``Mul / Div / Add / Sub (c) ... -> Conv``: a chain of such ops on the Conv's input, each ``c`` a
  constant per *input* channel or a single element, is one affine map ``a * t + b``: ``a`` scales the
  weight's input channels (zero padding stays zero), ``b`` goes into the bias (``W . b``) where the Conv
  pads nothing, else stays as one Add of ``b / a`` before it (a padded border must read zeros).
  PP-OCR writes ``x * clip(x + 3, 0, 6) / 6`` and then a learnable scalar affine before most of its
  convs: the Div, Mul and Add were three of the six passes between two convs.
* ``Pad(constant 0, spatial axes only) -> Conv`` (explicit pads, no auto_pad): the Pad's amounts are
  added to the Conv's ``pads`` and the Pad is dropped (the Conv reads the Pad's input), as onnxruntime's
  pad fusion does; every reader of the Pad output must be such a Conv.

New weights are new initializers (the old ones may be shared with other nodes). The per-channel
factors are computed in float64; the weights are scaled in their own precision (float32 for float16
weights), as onnxruntime does: a float64 copy of every weight cost a light model's load ~25 ms of
fresh memory.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir


def fuse_conv_affine(model: ir.Model) -> int:
    graph = model.graph
    fused = _fold_pads(graph)
    for node in _ir.live_nodes(graph):
        if not _ir.is_op(node, "Conv"):
            continue
        folded = _fold_input_affine(graph, node)
        if folded is not None:
            node = folded
            fused += 1
        while True:  # a Conv may absorb BN, then Mul, then Add...
            nxt = _ir.single_consumer(node.outputs[0])
            if nxt is None:
                break
            folded = _fold_into(graph, node, nxt)
            if folded is None:
                break
            node = folded
            fused += 1
    for node in _ir.live_nodes(graph):
        if _ir.is_op(node, "BatchNormalization"):
            while (nxt := _ir.single_consumer(node.outputs[0])) is not None and _fold_into_norm(graph, node, nxt):
                fused += 1
    return fused


def _fold_into_norm(graph: ir.Graph, bn: ir.Node, nxt: ir.Node) -> bool:
    """Fold a per-channel Mul/Add ``nxt`` into the inference BatchNormalization ``bn``."""
    if len(bn.inputs) != 5 or not _inference_norm(bn):
        return False
    rank = _ir.rank(bn.inputs[0])
    scale, bias = _ir.const_array(bn.inputs[1]), _ir.const_array(bn.inputs[2])
    if rank is None or rank < 2 or scale is None or bias is None or scale.ndim != 1 or scale.shape != bias.shape:
        return False
    affine = _affine_operand(nxt, bn.outputs[0], scale.shape[0], rank, scale.dtype)
    if affine is None:
        return False
    other, vec = affine
    if nxt.op_type == "Mul":
        new_scale, new_bias = scale * vec, bias * vec
    else:
        new_scale, new_bias = scale, bias + vec
    old_values = [bn.inputs[1], bn.inputs[2], other]
    name = bn.name or "bn"
    bn.replace_input_with(1, _ir.add_initializer(graph, new_scale.astype(scale.dtype), name + "_scale"))
    bn.replace_input_with(2, _ir.add_initializer(graph, new_bias.astype(bias.dtype), name + "_B"))
    _ir.replace_value(graph, nxt.outputs[0], bn.outputs[0])
    graph.remove(nxt, safe=True)
    _ir.drop_unused_initializers(graph, old_values)
    return True


def _inference_norm(bn: ir.Node) -> bool:
    """A BatchNormalization in inference form: not training, only its first output read."""
    return not _ir.attr(bn, "training_mode", 0) and not any(o.uses() or o.is_graph_output() for o in bn.outputs[1:])


def _affine_operand(node: ir.Node, x: ir.Value, channels: int, rank: int,
                    dtype: np.dtype) -> tuple[ir.Value, np.ndarray] | None:
    """(the constant, its per-channel float64 vector) when ``node`` is a Mul or Add of ``x`` (rank
    ``rank``, ``channels`` on axis 1) by a constant of ``dtype`` that broadcasts per channel."""
    if not (_ir.is_op(node, "Mul") or _ir.is_op(node, "Add")) or len(node.inputs) != 2:
        return None
    other = node.inputs[1] if node.inputs[0] is x else node.inputs[0]
    c = None if other is x else _ir.const_array(other)
    if c is None or c.dtype != dtype:
        return None
    vec = _per_channel(c, channels, rank)
    return None if vec is None else (other, vec.astype(np.float64))


def _conv_params(node: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    W = _ir.const_array(node.inputs[1]) if len(node.inputs) > 1 else None
    if W is None or W.dtype.kind != "f" or W.ndim < 3:
        return None
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        B = _ir.const_array(node.inputs[2])
        if B is None:
            return None
    else:
        B = np.zeros(W.shape[0], dtype=W.dtype)
    return W, B


def _per_channel(c: np.ndarray, channels: int, out_rank: int) -> np.ndarray | None:
    """``c`` as a [C] vector when it broadcasts per output channel of a Conv output of rank
    ``out_rank`` without changing that output's shape, else None."""
    if c.ndim > out_rank:
        return None
    if c.size == 1:
        return np.full(channels, c.reshape(-1)[0])
    shape = (1,) * (out_rank - c.ndim) + tuple(c.shape)
    if shape[1] != channels or any(d != 1 for i, d in enumerate(shape) if i != 1):
        return None
    return c.reshape(-1)


def _fold_into(graph: ir.Graph, conv: ir.Node, nxt: ir.Node) -> ir.Node | None:
    """Fold ``nxt`` into ``conv``; returns the Conv node now in the graph, or None when not foldable."""
    if not (_ir.is_op(nxt, "BatchNormalization") or _ir.is_op(nxt, "Mul") or _ir.is_op(nxt, "Add")):
        return None  # before reading the weights: most Convs are followed by something else
    params = _conv_params(conv)
    if params is None:
        return None
    W, B = params
    C = W.shape[0]
    per_channel = (C,) + (1,) * (W.ndim - 1)
    work = np.promote_types(W.dtype, np.float32)
    if _ir.is_op(nxt, "BatchNormalization"):
        if not _inference_norm(nxt):
            return None
        arrays = [_ir.const_array(v) for v in nxt.inputs[1:5]]
        if any(a is None for a in arrays) or any(a.size != C for a in arrays):
            return None
        gamma, beta, mean, var = (a.astype(np.float64).reshape(-1) for a in arrays)
        eps = float(_ir.attr(nxt, "epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        B2 = (B.astype(np.float64) - mean) * scale + beta
    else:
        # the Conv output's rank is W's: with it, _per_channel admits only constants whose broadcast
        # keeps the Conv output's shape, symbolic dims or not
        affine = _affine_operand(nxt, conv.outputs[0], C, W.ndim, W.dtype)
        if affine is None:
            return None
        vec = affine[1]
        scale = vec if nxt.op_type == "Mul" else None
        B2 = B * vec if nxt.op_type == "Mul" else B + vec
    # per output channel, the float64 factor rounded once to the weight's working precision
    W2 = None if scale is None else W.astype(work, copy=False) * scale.astype(work).reshape(per_channel)
    old_values = [v for v in (*conv.inputs[1:], *nxt.inputs) if v is not None]
    if W2 is not None:
        W2 = W2.astype(W.dtype, copy=False)
        conv.replace_input_with(1, _ir.add_initializer(graph, W2, (conv.name or "conv") + "_W"))
    conv = _with_bias(graph, conv, _ir.add_initializer(graph, B2.astype(W.dtype), (conv.name or "conv") + "_B"))
    # the Conv output has this one reader and is no graph output, so it can always take nxt's place
    _ir.replace_value(graph, nxt.outputs[0], conv.outputs[0])
    graph.remove(nxt, safe=True)
    _ir.drop_unused_initializers(graph, old_values)
    return conv



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
        vec = _per_channel(c, channels, rank)  # also: c does not broadcast the value to a larger shape
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
    if x is None or x.producer() is None or x.producer().op_type not in ("Mul", "Div", "Add", "Sub"):
        return None  # before reading the weights: most Convs read something else
    params = _conv_params(conv)
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
    if not chain:
        return None
    scale, shift = np.ones(Cg * group), np.zeros(Cg * group)
    for node, _, vec in reversed(chain):
        if node.op_type == "Mul":
            scale, shift = scale * vec, shift * vec
        elif node.op_type == "Div":
            scale, shift = scale / vec, shift / vec
        else:
            shift = shift + vec if node.op_type == "Add" else shift - vec
    pads = _ir.attr(conv, "pads", None) or []
    auto_pad = _ir.attr(conv, "auto_pad", "NOTSET")
    padded = any(pads) or (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) not in ("NOTSET", "VALID")
    keep_shift = padded and np.any(shift)
    if keep_shift and (len(chain) == 1 or not np.all(scale)):
        return None  # one Add for one Add, or a shift that a zero scale cannot carry
    grouped = (group, M // group, Cg) + W.shape[2:]  # W's output channels by group, then its input channels
    per_input = (group, 1, Cg) + (1,) * (W.ndim - 2)
    old_values = [v for v in conv.inputs[1:] if v is not None] + [v for n, _, _ in chain for v in n.inputs]
    t = chain[-1][1]
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
        spatial = tuple(range(3, W.ndim + 1))
        w_dot_b = (W.reshape(grouped).sum(axis=spatial, dtype=np.float64) * shift.reshape(group, 1, Cg)).sum(axis=2)
        B2 = (B.astype(np.float64) + w_dot_b.reshape(M)).astype(W.dtype)
        conv = _with_bias(graph, conv, _ir.add_initializer(graph, B2, name + "_B"))
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


def _with_bias(graph: ir.Graph, conv: ir.Node, bias: ir.Value) -> ir.Node:
    """``conv`` reading ``bias`` as its bias; returns the Conv node now in the graph."""
    if len(conv.inputs) > 2:
        conv.replace_input_with(2, bias)
        return conv
    # onnx_ir nodes have a fixed input list: rebuild the Conv with the bias appended
    new = ir.Node(conv.domain, conv.op_type, [*conv.inputs, bias], list(conv.attributes.values()),
                  num_outputs=1, name=conv.name)
    new.outputs[0].name = _ir.unique_name(graph, conv.outputs[0].name or "conv_out")
    _ir.copy_type(conv.outputs[0], new.outputs[0])
    graph.insert_before(conv, new)
    _ir.replace_value(graph, conv.outputs[0], new.outputs[0])  # a graph output keeps its name
    graph.remove(conv, safe=True)
    return new


def _pad_amounts(pad: ir.Node, rank: int) -> list[int] | None:
    """The Pad's pads (begin..., end...) over ``rank`` axes when it is a zero constant pad, else None."""
    mode = _ir.attr(pad, "mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if mode != "constant":
        return None
    if len(pad.inputs) > 1:  # opset >= 11: pads (and value, axes) are inputs
        pads = _ir.const_array(pad.inputs[1])
        if pads is None:
            return None
        if len(pad.inputs) > 2 and pad.inputs[2] is not None:
            value = _ir.const_array(pad.inputs[2])
            if value is None or value.size != 1 or float(value.reshape(-1)[0]) != 0.0:
                return None
        if len(pad.inputs) > 3 and pad.inputs[3] is not None:
            return None  # axes: keep it simple
        pads = [int(v) for v in pads.reshape(-1)]
    else:
        pads = _ir.attr(pad, "pads", None) or _ir.attr(pad, "paddings", None)
        if pads is None or float(_ir.attr(pad, "value", 0.0)) != 0.0:
            return None
        pads = [int(v) for v in pads]
    if len(pads) != 2 * rank or any(v < 0 for v in pads):
        return None
    return pads


def _fold_pads(graph: ir.Graph) -> int:
    fused = 0
    for pad in list(graph):
        if pad.graph is not graph or not _ir.is_op(pad, "Pad") or pad.outputs[0].is_graph_output():
            continue
        rank = _ir.rank(pad.inputs[0])
        if rank is None or rank < 3 or _ir.dtype_of(pad.inputs[0]) not in _ir.FLOAT_TYPES:
            continue
        pads = _pad_amounts(pad, rank)
        if pads is None or any(pads[i] or pads[rank + i] for i in range(2)):
            continue
        uses = list(pad.outputs[0].uses())
        convs = [u.node for u in uses]
        if not uses or any(not _ir.is_op(c, "Conv") or u.idx != 0 for c, u in zip(convs, uses)):
            continue
        if any(_ir.attr(c, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET") for c in convs):
            continue
        n = rank - 2
        for conv in convs:
            old = _ir.attr(conv, "pads", None) or [0] * (2 * n)
            new = [old[i] + pads[2 + i] for i in range(n)] + [old[n + i] + pads[rank + 2 + i] for i in range(n)]
            conv.attributes["pads"] = ir.AttrInt64s("pads", new)
            conv.replace_input_with(0, pad.inputs[0])
        graph.remove(pad, safe=True)
        fused += 1
    return fused
