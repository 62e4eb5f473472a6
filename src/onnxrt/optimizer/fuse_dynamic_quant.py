"""Dynamic-quantization matmul fusions (EXTENDED), into the com.microsoft ops onnxruntime runs on CPU.

``onnxruntime.quantization.quantize_dynamic`` writes every quantized MatMul as::

    x_q, x_scale, x_zp = DynamicQuantizeLinear(x)          # one per distinct activation
    acc = MatMulInteger(x_q, W_q, x_zp, W_zp)              # W_q int8/uint8 constant, W_zp scalar or [N]
    scales = Mul(x_scale, W_scale)                         # W_scale scalar or [N] (per channel)
    y = Mul(Cast(acc, to=FLOAT), scales)                   # either operand order
    [y = Add(y, bias)]                                     # bias: the float model's constant [N]

Two rewrites, in this order (the same two onnxruntime makes):

1. ``MatMulInteger -> Cast(FLOAT) -> Mul(a_scale * b_scale) [-> Add(bias)]`` becomes
   ``MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zp, b_zp[, bias])``. ``a_scale`` must be a
   scalar (what DynamicQuantizeLinear gives), ``b_scale`` a constant scalar or [N], ``B`` a 2-D 8-bit
   constant and ``bias`` a 1-D float constant of N values. The int32 and cast values must have no
   other reader; the scale product is left for dead-code removal (or kept when something else reads it).
2. ``DynamicQuantizeLinear(x) -> MatMulIntegerToFloat`` becomes ``DynamicQuantizeMatMul(x, B, b_scale,
   b_zp[, bias])`` when the MatMulIntegerToFloat is the only reader of all three DynamicQuantizeLinear
   outputs. An activation shared by several matmuls (BERT's Q, K and V projections) stays quantized once,
   feeding MatMulIntegerToFloat nodes.

The result is what onnxruntime itself produces at ORT_ENABLE_EXTENDED, so a saved optimized model loads and
gives the same results there.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir

_8BIT = (ir.DataType.UINT8, ir.DataType.INT8)


def fuse_dynamic_quant(model: ir.Model) -> int:
    graph = model.graph
    fused = 0
    for node in _ir.live_nodes(graph):
        if _ir.is_op(node, "MatMulInteger"):
            fused += _to_matmul_integer_to_float(model, node)
    for node in _ir.live_nodes(graph):
        if _ir.is_op(node, "MatMulIntegerToFloat", _ir.MS_DOMAIN):
            fused += _to_dynamic_quantize_matmul(model, node)
    return fused


def _input(node: ir.Node, i: int) -> ir.Value | None:
    return node.inputs[i] if len(node.inputs) > i else None


def _is_scalar(value: ir.Value | None) -> bool:
    if value is None:
        return False
    p = value.producer()
    if p is not None and _ir.is_op(p, "DynamicQuantizeLinear") and p.outputs[0] is not value:
        return True  # y_scale and y_zero_point are scalars by definition
    arr = _ir.const_array(value)
    if arr is not None:
        return arr.size == 1
    shape = _ir.static_shape(value)
    return shape is not None and len(shape) <= 1 and int(np.prod(shape, dtype=np.int64)) == 1


def _from_dql(value: ir.Value) -> ir.Node | None:
    p = value.producer()
    return p if p is not None and _ir.is_op(p, "DynamicQuantizeLinear") else None


def _is_8bit(value: ir.Value) -> bool:
    """uint8/int8, from the inferred type or (models without value_info) DynamicQuantizeLinear's output."""
    dql = _from_dql(value)
    if dql is not None:
        return dql.outputs[0] is value
    return _ir.dtype_of(value) in _8BIT


def _float_dtype(value: ir.Value) -> ir.DataType | None:
    """The value's element type; DynamicQuantizeLinear's y_scale is float even when no type was inferred."""
    dt = _ir.dtype_of(value)
    if dt is None:
        dql = _from_dql(value)
        if dql is not None and dql.outputs[1] is value:
            return ir.DataType.FLOAT
        arr = _ir.const_array(value)
        if arr is not None and arr.dtype == np.float32:
            return ir.DataType.FLOAT
    return dt


def _per_column_const(value: ir.Value | None, n: int, kinds: str) -> bool:
    """A constant scalar or [N] vector of the given dtype kinds."""
    arr = _ir.const_array(value)
    if arr is None or arr.dtype.kind not in kinds:
        return False
    return arr.size == 1 and arr.ndim <= 1 or arr.shape == (n,)


def _other(node: ir.Node, value: ir.Value) -> ir.Value | None:
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    return b if a is value else a if b is value else None


def _to_matmul_integer_to_float(model: ir.Model, mmi: ir.Node) -> int:
    graph = model.graph
    a, b, a_zp, b_zp = (_input(mmi, i) for i in range(4))
    if a is None or b is None:
        return 0
    w = _ir.const_array(b)
    if w is None or w.ndim != 2 or w.dtype not in (np.uint8, np.int8) or not _is_8bit(a):
        return 0
    n = w.shape[1]
    if a_zp is not None and not _is_scalar(a_zp):
        return 0
    if b_zp is not None and not _per_column_const(b_zp, n, "iu"):
        return 0
    cast = _ir.single_consumer(mmi.outputs[0])
    if cast is None or not _ir.is_op(cast, "Cast") or _ir.attr(cast, "to") != int(ir.DataType.FLOAT):
        return 0
    mul = _ir.single_consumer(cast.outputs[0])
    if mul is None or not _ir.is_op(mul, "Mul"):
        return 0
    scales = _other(mul, cast.outputs[0])
    if scales is None or scales is cast.outputs[0]:
        return 0
    prod = scales.producer()
    if prod is None or not _ir.is_op(prod, "Mul") or len(prod.inputs) != 2:
        return 0
    s0, s1 = prod.inputs
    # b_scale: the constant scalar/[N] operand; a_scale: the other, a scalar
    if _per_column_const(s1, n, "f") and _is_scalar(s0):
        a_scale, b_scale = s0, s1
    elif _per_column_const(s0, n, "f") and _is_scalar(s1):
        a_scale, b_scale = s1, s0
    else:
        return 0
    if _float_dtype(a_scale) != ir.DataType.FLOAT or _float_dtype(b_scale) != ir.DataType.FLOAT:
        return 0
    out_node, bias = mul, None
    add = _ir.single_consumer(mul.outputs[0])
    if add is not None and _ir.is_op(add, "Add"):
        cand = _other(add, mul.outputs[0])
        arr = _ir.const_array(cand)
        if arr is not None and arr.dtype == np.float32 and arr.shape == (n,) and cand is not mul.outputs[0]:
            out_node, bias = add, cand
    out = out_node.outputs[0]
    _ir.ensure_domain(model, _ir.MS_DOMAIN)
    fused = _ir.new_node(graph, _ir.MS_DOMAIN, "MatMulIntegerToFloat", [a, b, a_scale, b_scale, a_zp, b_zp, bias],
                         name_hint=(mmi.name or "MatMulInteger") + "_to_float", before=out_node)
    _ir.copy_type(out, fused.outputs[0])
    if not _ir.replace_value(graph, out, fused.outputs[0]):
        graph.remove(fused, safe=True)
        return 0
    _ir.remove_nodes(graph, [out_node, mul, cast, mmi, prod])
    return 1


def _to_dynamic_quantize_matmul(model: ir.Model, node: ir.Node) -> int:
    graph = model.graph
    a, b, a_scale, b_scale, a_zp, b_zp, bias = (_input(node, i) for i in range(7))
    if a is None:
        return 0
    dql = a.producer()
    if dql is None or not _ir.is_op(dql, "DynamicQuantizeLinear") or dql.graph is not graph:
        return 0
    q, s, z = dql.outputs
    if a is not q or a_scale is not s or (a_zp is not None and a_zp is not z):
        return 0
    for v in (q, s, z):
        if v.is_graph_output() or any(u.node is not node for u in v.uses()):
            return 0
    x = dql.inputs[0]
    if x is None or _ir.dtype_of(x) not in (None, ir.DataType.FLOAT):  # DynamicQuantizeLinear takes float only
        return 0
    out = node.outputs[0]
    new = _ir.new_node(graph, _ir.MS_DOMAIN, "DynamicQuantizeMatMul", [x, b, b_scale, b_zp, bias],
                       name_hint=(node.name or "MatMul") + "_dynamic_quant", before=node)
    _ir.copy_type(out, new.outputs[0])
    if not _ir.replace_value(graph, out, new.outputs[0]):
        graph.remove(new, safe=True)
        return 0
    graph.remove(node, safe=True)
    graph.remove(dql, safe=True)
    return 1
