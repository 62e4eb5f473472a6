"""Merge consecutive Transpose / Reshape / Cast (BASIC), where the result is exactly the same.

* ``Transpose(p1) -> Transpose(p2)`` = ``Transpose(p1[p2])`` (identity results vanish in eliminate_noops).
* ``Reshape -> Reshape(s2)`` = ``Reshape(s2)`` when ``s2`` is a constant with no 0 entry (a 0 would
  copy a dim of the intermediate shape) and the second Reshape has no ``allowzero``.
* ``Cast(T1) -> Cast(T2)`` = ``Cast(T2)`` when every T0 value is exactly representable in T1 (so the
  first cast loses nothing); when T2 is T0 the pair is removed.

The first node is kept when something else still reads its output (dead-node removal drops it otherwise).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir

D = ir.DataType
_SIGNED = [D.INT8, D.INT16, D.INT32, D.INT64]
_UNSIGNED = [D.UINT8, D.UINT16, D.UINT32, D.UINT64]
# source type -> types holding every one of its values exactly
_LOSSLESS: dict[D, set[D]] = {
    D.BOOL: {*_SIGNED, *_UNSIGNED, D.FLOAT16, D.BFLOAT16, D.FLOAT, D.DOUBLE},
    D.INT8: {D.INT16, D.INT32, D.INT64, D.FLOAT16, D.BFLOAT16, D.FLOAT, D.DOUBLE},
    D.UINT8: {D.INT16, D.INT32, D.INT64, D.UINT16, D.UINT32, D.UINT64, D.FLOAT16, D.BFLOAT16, D.FLOAT, D.DOUBLE},
    D.INT16: {D.INT32, D.INT64, D.FLOAT, D.DOUBLE},
    D.UINT16: {D.INT32, D.INT64, D.UINT32, D.UINT64, D.FLOAT, D.DOUBLE},
    D.INT32: {D.INT64, D.DOUBLE},
    D.UINT32: {D.INT64, D.UINT64, D.DOUBLE},
    D.FLOAT16: {D.FLOAT, D.DOUBLE},
    D.BFLOAT16: {D.FLOAT, D.DOUBLE},
    D.FLOAT: {D.DOUBLE},
}


def merge_consecutive(model: ir.Model) -> int:
    graph = model.graph
    merged = 0
    for node in _ir.live_nodes(graph):
        if node.domain not in ("", "ai.onnx") or not node.inputs:
            continue
        first = node.inputs[0].producer() if node.inputs[0] is not None else None
        if first is None or first.graph is not graph or first.op_type != node.op_type or first.domain != node.domain:
            continue
        if node.op_type == "Transpose":
            merged += _merge_transpose(graph, first, node)
        elif node.op_type == "Reshape":
            merged += _merge_reshape(graph, first, node)
        elif node.op_type == "Cast":
            merged += _merge_cast(graph, first, node)
    return merged


def _merge_transpose(graph: ir.Graph, first: ir.Node, second: ir.Node) -> int:
    p1, p2 = _ir.attr(first, "perm"), _ir.attr(second, "perm")
    if p1 is None or p2 is None or len(p1) != len(p2):
        return 0
    perm = [int(p1[i]) for i in p2]
    new = _ir.new_node(graph, "", "Transpose", [first.inputs[0]], {"perm": perm}, before=second)
    return _swap(graph, second, new, first)


def _merge_reshape(graph: ir.Graph, first: ir.Node, second: ir.Node) -> int:
    shape = _ir.const_array(second.inputs[1]) if len(second.inputs) > 1 else None
    if shape is None or np.any(shape == 0) or _ir.attr(second, "allowzero", 0):
        return 0
    new = _ir.new_node(graph, "", "Reshape", [first.inputs[0], second.inputs[1]], before=second)
    return _swap(graph, second, new, first)


def _merge_cast(graph: ir.Graph, first: ir.Node, second: ir.Node) -> int:
    t0 = _ir.dtype_of(first.inputs[0])
    t1, t2 = _ir.attr(first, "to"), _ir.attr(second, "to")
    if t0 is None or not isinstance(t1, int) or not isinstance(t2, int):
        return 0  # Cast-1 names the type as a string: left alone
    if D(t1) not in _LOSSLESS.get(t0, ()):
        return 0
    if D(t2) == t0:
        return 1 if _ir.replace_value(graph, second.outputs[0], first.inputs[0]) and _cleanup(graph, second, first) else 0
    attrs = {"to": int(t2)}
    if second.attributes.get("saturate") is not None:
        attrs["saturate"] = _ir.attr(second, "saturate")
    new = _ir.new_node(graph, "", "Cast", [first.inputs[0]], attrs, before=second)
    return _swap(graph, second, new, first)


def _swap(graph: ir.Graph, old: ir.Node, new: ir.Node, first: ir.Node) -> int:
    _ir.copy_type(old.outputs[0], new.outputs[0])
    if not _ir.replace_value(graph, old.outputs[0], new.outputs[0]):
        graph.remove(new, safe=True)
        return 0
    _cleanup(graph, old, first)
    return 1


def _cleanup(graph: ir.Graph, old: ir.Node, first: ir.Node) -> bool:
    graph.remove(old, safe=True)
    if not any(o.uses() or o.is_graph_output() for o in first.outputs):
        graph.remove(first, safe=True)
    return True
