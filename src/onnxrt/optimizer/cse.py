"""Common subexpression elimination (BASIC).

Two nodes with the same op, domain, attributes and the very same input values compute the same thing:
the later one's readers are switched to the earlier one's outputs. Small constants with equal dtype,
shape and bytes are merged first, so ``x + 1`` written twice with two different ``1`` initializers is
also caught. Random ops and ops with subgraphs are left alone. One pass in topological order is
linear in the graph size (a dict keyed by the node signature).
"""

from __future__ import annotations

from typing import Any, Hashable

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir

_MERGE_CONSTANTS_UP_TO = 256  # elements; bigger initializers are compared by identity only
_NONDETERMINISTIC = frozenset({
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli", "Dropout",
})


def eliminate_common_subexpressions(model: ir.Model) -> int:
    graph = model.graph
    merged = _merge_small_constants(graph)
    try:
        _ir.sort_if_needed(graph)
    except Exception:
        return merged
    # nodes by (op, inputs); attribute keys, which can be long (a tree ensemble's are hundreds of
    # thousands of numbers), are made only when a second node reads the same inputs
    seen: dict[Hashable, list[list[Any]]] = {}
    for node in list(graph):
        if node.op_type in _NONDETERMINISTIC or not node.inputs:
            # input-less nodes are Constants (merged as initializers above, where the main graph has
            # made them so) or generators: comparing every pair by its tensor costs more than it saves
            continue
        candidates = seen.setdefault(_input_signature(node), [])
        if not candidates:
            candidates.append([node, _UNKNOWN])
            continue
        key = _attribute_signature(node)
        if key is None:
            continue
        first = None
        for entry in candidates:
            if entry[1] is _UNKNOWN:
                entry[1] = _attribute_signature(entry[0])
            if entry[1] is not None and entry[1] == key:
                first = entry[0]
                break
        if first is None:
            candidates.append([node, key])
            continue
        ok = True
        for old, new in zip(node.outputs, first.outputs):
            if old.is_graph_output() and new.is_graph_output():
                ok = False
        if not ok:
            continue
        for old, new in zip(node.outputs, first.outputs):
            if old.is_graph_output():
                if not _ir.replace_value(graph, old, new):
                    ok = False
            else:
                old.replace_all_uses_with(new)
        if ok and not any(o.uses() or o.is_graph_output() for o in node.outputs):
            graph.remove(node, safe=True)
            merged += 1
    return merged


_UNKNOWN = object()  # attribute signature not made yet


def _input_signature(node: ir.Node) -> Hashable:
    inputs = tuple(id(v) if v is not None else None for v in node.inputs)
    return (node.domain, node.op_type, node.overload, len(node.outputs), inputs)


def _attribute_signature(node: ir.Node) -> Hashable | None:
    """The node's attributes as a comparable key; None for nodes never merged (subgraphs, refs)."""
    attrs = []
    for name in sorted(node.attributes):
        a = node.attributes[name]
        if a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) or a.is_ref():
            return None
        attrs.append((name, int(a.type), _attr_key(a)))
    return tuple(attrs)


def _attr_key(a: ir.Attr) -> Hashable:
    v = a.value
    if a.type == ir.AttributeType.TENSOR:
        arr = v.numpy()
        return (str(arr.dtype), arr.shape, arr.tobytes() if arr.dtype != object else repr(arr.tolist()))
    if a.type == ir.AttributeType.TENSORS:
        return tuple(_attr_key(ir.AttrTensor("t", t)) for t in v)
    if isinstance(v, np.ndarray):  # a long INTS / FLOATS attribute (loader.ArrayAttr)
        return (str(v.dtype), v.shape, v.tobytes())
    if isinstance(v, (list, tuple)):
        return tuple(v)
    if isinstance(v, bytes):
        return v
    return repr(v) if not isinstance(v, (int, float, str)) else v


def _merge_small_constants(graph: ir.Graph) -> int:
    seen: dict[Any, ir.Value] = {}
    merged = 0
    for name, value in list(graph.initializers.items()):
        if value.is_graph_input() or value.is_graph_output() or value.const_value is None:
            continue
        arr = _ir.const_array(value)
        if arr is None or arr.size > _MERGE_CONSTANTS_UP_TO or arr.dtype == object:
            continue
        key = (str(arr.dtype), arr.shape, np.ascontiguousarray(arr).tobytes())
        first = seen.get(key)
        if first is None:
            seen[key] = value
            continue
        value.replace_all_uses_with(first)
        del graph.initializers[name]
        merged += 1
    return merged
