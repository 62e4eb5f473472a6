"""Activation fusions (EXTENDED).

* ``Conv -> act`` into com.microsoft ``FusedConv`` (float32, as onnxruntime's CPU kernel), for act in
  Relu, Tanh, Sigmoid, LeakyRelu, Clip (constant bounds), HardSigmoid; ``activation_params`` carries
  alpha / (min, max) / (alpha, beta).
* ``Conv -> Add(., z) [-> act]`` (a residual connection) into ``FusedConv(X, W, B, Z)``, which adds Z
  before the activation, when z has the Conv output's shape (no broadcasting): the kernel adds it to
  each GEMM output block while that is in cache, instead of another pass over the whole output.
  Without an activation after the Add, the node says ``LeakyRelu`` with alpha 1 (onnxruntime's
  FusedConv requires an activation; that one is the identity, and onnxrt skips it).
* ``Gemm -> act`` into com.microsoft ``FusedGemm`` (float32) for Relu, Tanh, Sigmoid, LeakyRelu,
  HardSigmoid (``activation_alpha`` / ``activation_beta``).
* ``x * Sigmoid(x)`` (SiLU / Swish) into com.microsoft ``QuickGelu`` with ``alpha=1`` (QuickGelu is
  ``x * sigmoid(alpha * x)``).
* ``x * HardSigmoid(x; alpha=1/6, beta=0.5)`` into ai.onnx ``HardSwish`` (opset 14+).

com.microsoft FusedMatMul is MatMul with transposes and a scale, not an activation, so MatMul + act is
left alone.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir

_FLT_MAX = float(np.finfo(np.float32).max)


def fuse_activations(model: ir.Model) -> int:
    graph = model.graph
    fused = 0
    for node in _ir.live_nodes(graph):
        if _ir.is_op(node, "Mul") and len(node.inputs) == 2:
            fused += _fuse_swish(model, node)
    for node in _ir.live_nodes(graph):
        if _ir.is_op(node, "Conv") or _ir.is_op(node, "Gemm"):
            fused += _fuse_into(model, node)
    return fused


def _residual_operand(node: ir.Node) -> tuple[ir.Node, ir.Value] | None:
    """(Add, z) when the Conv's output is read only by an Add (or a two-input Sum, as Caffe2's
    ResNets write it) whose other input z surely has the same shape (no broadcasting)."""
    add = _ir.single_consumer(node.outputs[0])
    if not (_ir.is_op(add, "Add") or _ir.is_op(add, "Sum")) or len(add.inputs) != 2:
        return None
    a, b = add.inputs
    z = b if a is node.outputs[0] else a
    if z is None or z is node.outputs[0]:
        return None
    if not _ir.same_shape(node.outputs[0], z) or _ir.dtype_of(z) != ir.DataType.FLOAT:
        return None
    return add, z


def _activation(act: ir.Node, model: ir.Model) -> tuple[str, list[float]] | None:
    """(onnxruntime activation name, params) for a fusable activation node."""
    if act.domain not in ("", "ai.onnx"):
        return None
    op = act.op_type
    if op in ("Relu", "Tanh", "Sigmoid"):
        return op, []
    if op == "LeakyRelu":
        return op, [float(_ir.attr(act, "alpha", 0.01))]
    if op == "HardSigmoid":
        return op, [float(_ir.attr(act, "alpha", 0.2)), float(_ir.attr(act, "beta", 0.5))]
    if op == "Clip":
        if _ir.opset(model) < 11:
            return op, [float(_ir.attr(act, "min", -_FLT_MAX)), float(_ir.attr(act, "max", _FLT_MAX))]
        bounds = []
        for i, default in ((1, -_FLT_MAX), (2, _FLT_MAX)):
            if len(act.inputs) > i and act.inputs[i] is not None:
                v = _ir.scalar(act.inputs[i])
                if v is None:
                    return None
                bounds.append(v)
            else:
                bounds.append(default)
        return op, bounds
    return None


def _fuse_into(model: ir.Model, node: ir.Node) -> int:
    graph = model.graph
    if _ir.dtype_of(node.inputs[0]) != ir.DataType.FLOAT:
        return 0
    inputs = list(node.inputs)
    replaced = [node]  # the nodes the fused one stands for, the last one's output is its output
    residual = _residual_operand(node) if node.op_type == "Conv" else None
    if residual is not None:
        add, z = residual
        inputs = inputs + [None] * (3 - len(inputs)) + [z]
        replaced.append(add)
    last = replaced[-1].outputs[0]
    act = _ir.single_consumer(last)
    spec = _activation(act, model) if act is not None and act.inputs[0] is last else None
    if spec is None and residual is None:
        return 0
    if spec is not None:
        replaced.append(act)
    _ir.ensure_domain(model, _ir.MS_DOMAIN)
    attrs = {a.name: a for a in node.attributes.values()}
    if node.op_type == "Conv":
        # onnxruntime's FusedConv requires an activation: LeakyRelu with alpha 1 is the identity
        name, params = spec if spec is not None else ("LeakyRelu", [1.0])
        attrs["activation"] = name
        if params:
            attrs["activation_params"] = params
        new_op = "FusedConv"
    else:
        name, params = spec
        if name == "Clip":
            return 0  # FusedGemm's Clip bounds are not taken from attributes in every onnxruntime version
        attrs["activation"] = name
        if params:
            attrs["activation_alpha"] = params[0]
        if len(params) > 1:
            attrs["activation_beta"] = params[1]
        new_op = "FusedGemm"
    end = replaced[-1]
    fused = _ir.new_node(graph, _ir.MS_DOMAIN, new_op, inputs, attrs,
                         name_hint=(node.name or node.op_type) + "_" + name, before=end)
    _ir.copy_type(end.outputs[0], fused.outputs[0])
    _ir.replace_value(graph, end.outputs[0], fused.outputs[0])
    graph.remove(replaced[::-1], safe=True)
    return 1


def _fuse_swish(model: ir.Model, mul: ir.Node) -> int:
    graph = model.graph
    a, b = mul.inputs
    for x, gate in ((a, b), (b, a)):
        if x is None or gate is None:
            continue
        p = gate.producer()
        if p is None or p.graph is not graph or p.inputs[0] is not x or _ir.single_consumer(gate) is not mul:
            continue
        if _ir.is_op(p, "Sigmoid"):
            if _ir.dtype_of(x) not in _ir.FLOAT_TYPES:
                return 0
            _ir.ensure_domain(model, _ir.MS_DOMAIN)
            new = _ir.new_node(graph, _ir.MS_DOMAIN, "QuickGelu", [x], {"alpha": 1.0}, name_hint="Swish", before=mul)
        elif _ir.is_op(p, "HardSigmoid") and _ir.opset(model) >= 14:
            if not (_ir.float_close(float(_ir.attr(p, "alpha", 0.2)), 1 / 6, 1e-6)
                    and _ir.float_close(float(_ir.attr(p, "beta", 0.5)), 0.5, 1e-6)):
                return 0
            new = _ir.new_node(graph, "", "HardSwish", [x], name_hint="HardSwish", before=mul)
        else:
            continue
        _ir.copy_type(mul.outputs[0], new.outputs[0])
        _ir.replace_value(graph, mul.outputs[0], new.outputs[0])
        graph.remove([mul, p], safe=True)
        return 1
    return 0
