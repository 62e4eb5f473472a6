"""GELU fusions (EXTENDED), into com.microsoft ops onnxruntime runs on CPU.

* erf form ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (``/ 1.4142`` or ``* 0.7071``; the three products in any
  association) -> ``Gelu``; with ``x = y + bias`` (bias a 1-D constant over the last axis) -> ``BiasGelu``.
* tanh form ``x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`` (``x^3`` as ``Pow(x, 3)`` or
  ``x * x * x``) -> ``FastGelu``.

Every intermediate must have no reader outside the pattern. Constants are matched to 1e-3 relative, which
covers the rounded literals exporters write.
"""

from __future__ import annotations

import math

import onnx_ir as ir

from onnxrt.optimizer import _ir


def fuse_gelu(model: ir.Model) -> int:
    graph = model.graph
    fused = 0
    for node in _ir.live_nodes(graph):
        if _ir.is_op(node, "Erf"):
            fused += _fuse_erf(model, node)
        elif _ir.is_op(node, "Tanh"):
            fused += _fuse_tanh(model, node)
    return fused


def _other(node: ir.Node, value: ir.Value) -> ir.Value | None:
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if a is value:
        return b
    if b is value:
        return a
    return None


def _only_reader(value: ir.Value, op_type: str) -> ir.Node | None:
    node = _ir.single_consumer(value)
    return node if node is not None and _ir.is_op(node, op_type) else None


def _producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    if value is None:
        return None
    p = value.producer()
    return p if p is not None and _ir.is_op(p, op_type) else None


def _match_tail(inner_out: ir.Value, x: ir.Value) -> tuple[list[ir.Node], ir.Value] | None:
    """From ``f = erf(...)`` / ``tanh(...)``: match ``(1 + f) * x * 0.5``; returns the nodes and output."""
    add = _only_reader(inner_out, "Add")
    if add is None or not _ir.float_close(_ir.scalar(_other(add, inner_out)), 1.0):
        return None
    m1 = _only_reader(add.outputs[0], "Mul")
    if m1 is None:
        return None
    o = _other(m1, add.outputs[0])
    if o is x:  # ((1+f) * x) * 0.5
        m2 = _only_reader(m1.outputs[0], "Mul")
        if m2 is None or not _ir.float_close(_ir.scalar(_other(m2, m1.outputs[0])), 0.5):
            return None
        return [add, m1, m2], m2.outputs[0]
    if _ir.float_close(_ir.scalar(o), 0.5):  # ((1+f) * 0.5) * x
        m2 = _only_reader(m1.outputs[0], "Mul")
        if m2 is None or _other(m2, m1.outputs[0]) is not x:
            return None
        return [add, m1, m2], m2.outputs[0]
    half = _producer(o, "Mul")  # (x * 0.5) * (1+f)
    if half is not None and _ir.single_consumer(o) is m1 and _other(half, x) is not None \
            and _ir.float_close(_ir.scalar(_other(half, x)), 0.5):
        return [half, add, m1], m1.outputs[0]
    return None


def _fuse_erf(model: ir.Model, erf: ir.Node) -> int:
    graph = model.graph
    scaled = erf.inputs[0]
    if _ir.single_consumer(scaled) is not erf:
        return 0
    p = scaled.producer()
    if p is None or len(p.inputs) != 2:
        return 0
    if _ir.is_op(p, "Div") and _ir.float_close(_ir.scalar(p.inputs[1]), math.sqrt(2.0)):
        x = p.inputs[0]
    elif _ir.is_op(p, "Mul"):
        x = next((v for v in p.inputs if _ir.float_close(_ir.scalar(_other(p, v)), 1 / math.sqrt(2.0))), None)
    else:
        return 0
    if x is None or _ir.dtype_of(x) not in _ir.FLOAT_TYPES:
        return 0
    tail = _match_tail(erf.outputs[0], x)
    if tail is None:
        return 0
    nodes, out = tail
    _ir.ensure_domain(model, _ir.MS_DOMAIN)
    anchor = nodes[-1]
    bias_add = _producer(x, "Add")
    bias = None
    if bias_add is not None and len(list(x.uses())) == 2 and not x.is_graph_output():
        for y, b in ((bias_add.inputs[0], bias_add.inputs[1]), (bias_add.inputs[1], bias_add.inputs[0])):
            arr = _ir.const_array(b)
            # only the last axis must be known: BiasGelu adds a bias along it (batch dims may be symbolic)
            last = y.shape[-1] if y.shape is not None and len(y.shape) else None
            if arr is not None and arr.ndim == 1 and isinstance(last, int) and last == arr.shape[0] \
                    and _ir.dtype_of(y) == _ir.dtype_of(b):
                bias = (y, b)
                break
    if bias is not None:
        new = _ir.new_node(graph, _ir.MS_DOMAIN, "BiasGelu", list(bias), name_hint="BiasGelu", before=anchor)
    else:
        new = _ir.new_node(graph, _ir.MS_DOMAIN, "Gelu", [x], name_hint="Gelu", before=anchor)
    _ir.copy_type(out, new.outputs[0])
    _ir.replace_value(graph, out, new.outputs[0])
    _ir.remove_nodes(graph, [*reversed(nodes), erf, p])
    if bias is not None:
        _ir.remove_nodes(graph, [bias_add])
    return 1


def _fuse_tanh(model: ir.Model, tanh: ir.Node) -> int:
    graph = model.graph
    arg = tanh.inputs[0]
    if _ir.single_consumer(arg) is not tanh:
        return 0
    scale = _producer(arg, "Mul")
    if scale is None:
        return 0
    inner = next((v for v in scale.inputs if _ir.float_close(_ir.scalar(_other(scale, v)), math.sqrt(2 / math.pi))), None)
    if inner is None or _ir.single_consumer(inner) is not scale:
        return 0
    add = _producer(inner, "Add")  # x + 0.044715 * x^3
    if add is None:
        return 0
    for x, cubic_term in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
        cubic_nodes = _match_cubic(cubic_term, x)
        if cubic_nodes is not None:
            break
    else:
        return 0
    if _ir.dtype_of(x) not in _ir.FLOAT_TYPES:
        return 0
    tail = _match_tail(tanh.outputs[0], x)
    if tail is None:
        return 0
    nodes, out = tail
    _ir.ensure_domain(model, _ir.MS_DOMAIN)
    new = _ir.new_node(graph, _ir.MS_DOMAIN, "FastGelu", [x], name_hint="FastGelu", before=nodes[-1])
    _ir.copy_type(out, new.outputs[0])
    _ir.replace_value(graph, out, new.outputs[0])
    _ir.remove_nodes(graph, [*reversed(nodes), tanh, scale, add, *cubic_nodes])
    return 1


def _match_cubic(term: ir.Value | None, x: ir.Value | None) -> list[ir.Node] | None:
    """``0.044715 * x^3`` with x^3 as Pow(x, 3) or x*x*x; returns its nodes, outermost first."""
    if term is None or x is None or _ir.single_consumer(term) is None:
        return None
    mul = _producer(term, "Mul")
    if mul is None:
        return None
    cube = next((v for v in mul.inputs if _ir.float_close(_ir.scalar(_other(mul, v)), 0.044715)), None)
    if cube is None or _ir.single_consumer(cube) is not mul:
        return None
    pow_ = _producer(cube, "Pow")
    if pow_ is not None and pow_.inputs[0] is x and _ir.float_close(_ir.scalar(pow_.inputs[1]), 3.0, 1e-6):
        return [mul, pow_]
    m2 = _producer(cube, "Mul")  # (x * x) * x
    if m2 is not None:
        sq = _other(m2, x)
        m1 = _producer(sq, "Mul")
        if m1 is not None and m1.inputs[0] is x and m1.inputs[1] is x and _ir.single_consumer(sq) is m2:
            return [mul, m2, m1]
    return None
