"""ai.onnx.preview.training Gradient: reverse-mode derivatives of a graph value.

``Gradient(xs, zs, y)`` outputs dy/dx for each x in ``xs``, seeded with ones (the sum of y's elements
is differentiated). At session construction the kernel finds, in the enclosing graph, the nodes that
compute ``y`` from ``xs``, ``zs`` and constants, and plans them once as a small forward graph whose
outputs are every intermediate value. At run time it runs that forward graph, then walks the nodes
backwards applying each op's vector-Jacobian product from ``_VJP``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import onnx_ir as ir

from onnxrt.errors import InvalidGraph, NotImplemented
from onnxrt.ops.registry import KernelContext, op_factory
from onnxrt.ops.training import TRAINING


def _unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient over the axes numpy broadcasting added or stretched to reach ``shape``."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def _vjp_add(g, ins, out, attrs):
    return [_unbroadcast(g, ins[0].shape), _unbroadcast(g, ins[1].shape)]


def _vjp_sub(g, ins, out, attrs):
    return [_unbroadcast(g, ins[0].shape), _unbroadcast(-g, ins[1].shape)]


def _vjp_mul(g, ins, out, attrs):
    a, b = ins
    return [_unbroadcast(g * b, a.shape), _unbroadcast(g * a, b.shape)]


def _vjp_div(g, ins, out, attrs):
    a, b = ins
    return [_unbroadcast(g / b, a.shape), _unbroadcast(-g * a / (b * b), b.shape)]


def _vjp_matmul(g, ins, out, attrs):
    a, b = ins
    a2 = a[np.newaxis] if a.ndim == 1 else a
    b2 = b[:, np.newaxis] if b.ndim == 1 else b
    g2 = g.reshape(np.matmul(a2, b2).shape)
    ga = np.matmul(g2, np.swapaxes(b2, -1, -2))
    gb = np.matmul(np.swapaxes(a2, -1, -2), g2)
    ga = ga.reshape(-1) if a.ndim == 1 else ga
    gb = gb.reshape(-1) if b.ndim == 1 else gb
    return [_unbroadcast(ga, a.shape).reshape(a.shape), _unbroadcast(gb, b.shape).reshape(b.shape)]


def _vjp_gemm(g, ins, out, attrs):
    a, b = ins[0], ins[1]
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    a_eff = a.T if attrs.get("transA", 0) else a
    b_eff = b.T if attrs.get("transB", 0) else b
    ga = alpha * (g @ b_eff.T)
    gb = alpha * (a_eff.T @ g)
    grads = [ga.T if attrs.get("transA", 0) else ga, gb.T if attrs.get("transB", 0) else gb]
    if len(ins) > 2 and ins[2] is not None:
        grads.append(_unbroadcast(beta * g, ins[2].shape))
    return grads


def _unary(derivative: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    def vjp(g, ins, out, attrs):
        return [g * derivative(ins[0], out)]

    return vjp


def _vjp_transpose(g, ins, out, attrs):
    perm = attrs.get("perm") or list(range(ins[0].ndim))[::-1]
    return [np.transpose(g, np.argsort(perm))]


def _vjp_reshape(g, ins, out, attrs):
    return [g.reshape(ins[0].shape)] + [None] * (len(ins) - 1)


def _vjp_reduce_sum(g, ins, out, attrs):
    x = ins[0]
    axes = attrs.get("axes")
    if axes is None and len(ins) > 1 and ins[1] is not None:
        axes = [int(a) for a in np.asarray(ins[1]).reshape(-1)]
    if not axes:
        axes = list(range(x.ndim))
    if not attrs.get("keepdims", 1):
        for a in sorted(ax % x.ndim for ax in axes):
            g = np.expand_dims(g, a)
    return [np.broadcast_to(g, x.shape).copy()] + [None] * (len(ins) - 1)


_VJP: dict[str, Callable] = {
    "Add": _vjp_add,
    "Sub": _vjp_sub,
    "Mul": _vjp_mul,
    "Div": _vjp_div,
    "MatMul": _vjp_matmul,
    "Gemm": _vjp_gemm,  # the optimizer turns MatMul+Add into Gemm
    "Neg": lambda g, ins, out, attrs: [-g],
    "Identity": lambda g, ins, out, attrs: [g],
    "Relu": _unary(lambda x, y: (x > 0).astype(x.dtype)),
    "Sigmoid": _unary(lambda x, y: y * (1 - y)),
    "Tanh": _unary(lambda x, y: 1 - y * y),
    "Exp": _unary(lambda x, y: y),
    "Log": _unary(lambda x, y: 1 / x),
    "Sqrt": _unary(lambda x, y: 0.5 / y),
    "Transpose": _vjp_transpose,
    "Reshape": _vjp_reshape,
    "ReduceSum": _vjp_reduce_sum,
}


@op_factory("Gradient", 1, domain=TRAINING)
def gradient(ctx: KernelContext):
    from onnxrt.runtime.plan import GraphPlan, PlanConfig

    xs: list[str] = list(ctx.attrs.get("xs", []))
    zs: list[str] = list(ctx.attrs.get("zs", []))
    y: str = ctx.attrs["y"]
    node: ir.Node = ctx.node  # type: ignore[attr-defined]
    graph = node.graph
    if graph is None:
        raise InvalidGraph(f"{ctx.describe()}: Gradient must sit in a graph")
    independents = set(xs) | set(zs)
    producers = {o.name: n for n in graph for o in n.outputs if o.name}

    # the nodes between the independents and y, in execution order
    needed: list[ir.Node] = []
    seen: set[int] = set()

    def visit(name: str) -> None:
        if name in independents or name not in producers:
            return
        producer = producers[name]
        if id(producer) in seen:
            return
        seen.add(id(producer))
        for v in producer.inputs:
            if v is not None and v.name:
                visit(v.name)
        needed.append(producer)

    visit(y)
    if y not in independents and not needed:
        raise InvalidGraph(f"{ctx.describe()}: y '{y}' is not computed from xs/zs in this graph")
    for n in needed:
        if n.op_type not in _VJP or n.domain not in ("", "ai.onnx"):
            raise NotImplemented(
                f"{ctx.describe()}: no derivative rule for {n.op_type} (node '{n.name}'); "
                f"differentiable ops: {', '.join(sorted(_VJP))}"
            )

    # a forward graph over the independents that returns every intermediate value
    initializers = []
    inner_outputs = []
    for n in needed:
        for v in n.inputs:
            if v is not None and v.name and v.name not in independents and v.name not in producers:
                if v.const_value is None:
                    raise InvalidGraph(f"{ctx.describe()}: '{v.name}' feeds y but is neither in xs/zs nor constant")
                initializers.append(ir.serde.serialize_tensor(v.const_value))
        inner_outputs.extend(o.name for o in n.outputs if o.name)
    forward = onnx.helper.make_graph(
        [ir.serde.serialize_node(n) for n in needed],
        "gradient_forward",
        [onnx.ValueInfoProto(name=name) for name in xs + zs],
        [onnx.ValueInfoProto(name=name) for name in inner_outputs],
        {t.name: t for t in initializers}.values(),
    )
    base = ctx.session._plan_config if hasattr(ctx.session, "_plan_config") else None
    config = PlanConfig(opsets=dict(base.opsets) if base else {"": ctx.opset, TRAINING: 1})
    plan = GraphPlan(ir.serde.deserialize_graph(forward), config, overridable_initializers=False)
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in initializers}
    steps = [
        ([v.name if v is not None else "" for v in n.inputs], [o.name for o in n.outputs],
         {k: a.value for k, a in n.attributes.items()}, n.op_type)
        for n in needed
    ]

    def run_gradient(*args):
        values = dict(constants)
        values.update(zip(xs + zs, args))
        values.update(zip(inner_outputs, plan.run(list(args))))
        grads: dict[str, np.ndarray] = {y: np.ones_like(np.asarray(values[y]))}
        for in_names, out_names, attrs, op_type in reversed(steps):
            g = grads.get(out_names[0])
            if g is None:
                continue
            ins = [np.asarray(values[n]) if n else None for n in in_names]
            for name, gi in zip(in_names, _VJP[op_type](g, ins, values[out_names[0]], attrs)):
                if name and gi is not None:
                    grads[name] = grads[name] + gi if name in grads else gi
        results = []
        for x, value in zip(xs, args):
            grad = grads.get(x)
            results.append(np.zeros_like(value) if grad is None else np.asarray(grad, dtype=np.asarray(value).dtype))
        return tuple(results)

    return run_gradient
