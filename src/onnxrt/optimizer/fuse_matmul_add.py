"""``MatMul -> Add(bias)`` into ``Gemm`` (BASIC), for 2-D operands only, as onnxruntime does.

Conditions: both MatMul inputs have static rank 2 ([M,K] x [K,N]); the MatMul output has no other
reader; the bias is the Add's other input, of rank <= 2, and broadcasts to [M,N] without changing the
output shape (unidirectional broadcast, which Gemm's C allows); float types only (Gemm before opset 11
required C; 11+ takes any broadcastable C).
"""

from __future__ import annotations

import onnx_ir as ir

from onnxrt.optimizer import _ir


def fuse_matmul_add(model: ir.Model) -> int:
    graph = model.graph
    if _ir.opset(model) < 11:
        return 0
    fused = 0
    for node in _ir.live_nodes(graph):
        if not _ir.is_op(node, "MatMul"):
            continue
        a, b = node.inputs[0], node.inputs[1]
        if _ir.rank(a) != 2 or _ir.rank(b) != 2:
            continue
        if _ir.dtype_of(a) not in _ir.FLOAT_TYPES:
            continue
        add = _ir.single_consumer(node.outputs[0])
        if add is None or not _ir.is_op(add, "Add"):
            continue
        bias = add.inputs[1] if add.inputs[0] is node.outputs[0] else add.inputs[0]
        if bias is None or bias is node.outputs[0] or _ir.rank(bias) is None or _ir.rank(bias) > 2:
            continue
        out_shape = _ir.static_shape(node.outputs[0])
        bias_shape = _ir.static_shape(bias)
        if out_shape is None or bias_shape is None:
            continue
        padded = (1,) * (2 - len(bias_shape)) + bias_shape
        if any(bd not in (1, od) for bd, od in zip(padded, out_shape)):
            continue
        if _ir.static_shape(add.outputs[0]) != out_shape:
            continue
        gemm = _ir.new_node(graph, "", "Gemm", [a, b, bias], name_hint=(node.name or "MatMul") + "_gemm", before=add)
        _ir.copy_type(add.outputs[0], gemm.outputs[0])
        _ir.replace_value(graph, add.outputs[0], gemm.outputs[0])
        graph.remove([add, node], safe=True)
        fused += 1
    return fused
