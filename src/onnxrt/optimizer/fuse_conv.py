"""Fold per-channel affine ops into the Conv before them (BASIC).

* ``Conv -> BatchNormalization`` (inference form, one output): ``W' = W * s``, ``B' = (B - mean) * s + beta``
  with ``s = gamma / sqrt(var + eps)`` per output channel.
* ``Conv -> Mul(c)`` and ``Conv -> Add(c)`` where ``c`` is a constant that broadcasts per output channel
  (shape ``[C,1,..,1]``, ``[1,C,1,..,1]`` or a single element): scale W and B, or shift B.

The Conv's weight (and bias) must be constants, and the Conv output must be read by that one node only.
* ``BatchNormalization -> Mul(c) / Add(c)`` (inference form, ``c`` per channel as above): the Mul/Add
  goes into the normalization's scale and bias (``scale' = scale * c``, ``B' = B * c`` or ``B + c``), as
  Caffe2's DenseNet writes an affine after every BatchNormalization.
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
    vec = per_channel(c, channels, rank)
    return None if vec is None else (other, vec.astype(np.float64))


def conv_params(node: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
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


def per_channel(c: np.ndarray, channels: int, out_rank: int) -> np.ndarray | None:
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
    params = conv_params(conv)
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
        # the Conv output's rank is W's: with it, per_channel admits only constants whose broadcast
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
    conv = with_bias(graph, conv, _ir.add_initializer(graph, B2.astype(W.dtype), (conv.name or "conv") + "_B"))
    # the Conv output has this one reader and is no graph output, so it can always take nxt's place
    _ir.replace_value(graph, nxt.outputs[0], conv.outputs[0])
    graph.remove(nxt, safe=True)
    _ir.drop_unused_initializers(graph, old_values)
    return conv



def with_bias(graph: ir.Graph, conv: ir.Node, bias: ir.Value) -> ir.Node:
    """``conv`` reading ``bias`` as its bias; returns the Conv node now in the graph."""
    if len(conv.inputs) > 2:
        conv.replace_input_with(2, bias)
        return conv
    return with_inputs(graph, conv, [*conv.inputs, bias])


def with_inputs(graph: ir.Graph, conv: ir.Node, inputs: list[ir.Value | None]) -> ir.Node:
    """``conv`` rebuilt to read ``inputs`` (onnx_ir nodes have a fixed input list: a bias is added or
    dropped so); returns the Conv node now in the graph, whose output replaces the old one."""
    new = ir.Node(conv.domain, conv.op_type, inputs, list(conv.attributes.values()),
                  num_outputs=1, name=conv.name)
    new.outputs[0].name = _ir.unique_name(graph, conv.outputs[0].name or "conv_out")
    _ir.copy_type(conv.outputs[0], new.outputs[0])
    graph.insert_before(conv, new)
    _ir.replace_value(graph, conv.outputs[0], new.outputs[0])  # a graph output keeps its name
    graph.remove(conv, safe=True)
    return new


def _pad_amounts(pad: ir.Node, rank: int) -> list[int] | None:
    """The Pad's pads (begin..., end...) over ``rank`` axes when it is a zero constant pad, else None."""
    if _ir.attr(pad, "mode", "constant") != "constant":  # onnx_ir gives string attributes as str
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
        if any(_ir.attr(c, "auto_pad", "NOTSET") != "NOTSET" for c in convs):
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
