"""Function ops: model-local functions and ONNX ops defined by a function body.

A node that calls a function is run by a nested :class:`GraphPlan` of the function
body, planned once per call site with the caller's attributes substituted for
the body's attribute references. Ops whose body depends on input types
(context-dependent functions such as Softmax-13's) are expanded with the types
shape inference found, or, when those are unknown, once per distinct set of
input dtypes seen at run time.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable

import numpy as np
import onnx
import onnx_ir as ir

from onnxrt.errors import Fail
from onnxrt.ops.registry import KernelContext, normalize_domain
from onnxrt.runtime.values import type_to_proto


def _substitute(nodes, caller_attrs: dict[str, onnx.AttributeProto], defaults: dict[str, onnx.AttributeProto]):
    out = []
    for node in nodes:
        node = copy.deepcopy(node)
        kept = []
        for attr in node.attribute:
            if attr.ref_attr_name:
                src = caller_attrs.get(attr.ref_attr_name) or defaults.get(attr.ref_attr_name)
                if src is None:
                    continue  # the inner op's own default applies
                new = copy.deepcopy(src)
                new.name = attr.name
                kept.append(new)
            else:
                if attr.HasField("g"):
                    _substitute_graph(attr.g, caller_attrs, defaults)
                for g in attr.graphs:
                    _substitute_graph(g, caller_attrs, defaults)
                kept.append(attr)
        del node.attribute[:]
        node.attribute.extend(kept)
        out.append(node)
    return out


def _substitute_graph(graph: onnx.GraphProto, caller_attrs, defaults) -> None:
    new_nodes = _substitute(graph.node, caller_attrs, defaults)
    del graph.node[:]
    graph.node.extend(new_nodes)


def _body_plan(fn: onnx.FunctionProto, ctx: KernelContext, base_config: Any, schema: Any = None):
    from onnxrt.runtime.plan import GraphPlan, PlanConfig

    caller = {}
    node: ir.Node = ctx.node  # type: ignore[attr-defined]
    for name, attr in node.attributes.items():
        caller[name] = ir.serde.serialize_attribute(attr)
    defaults = {a.name: a for a in fn.attribute_proto}
    if schema is not None:
        # An op's function body refers to the op's attributes; those the node leaves out take the
        # schema's defaults.
        for name, spec in schema.attributes.items():
            dv = spec.default_value
            if name not in defaults and dv is not None and dv.type != onnx.AttributeProto.UNDEFINED:
                defaults[name] = dv
    nodes = _substitute(fn.node, caller, defaults)
    # Context-dependent bodies leave out optional outputs the node does not ask for.
    available = set(fn.input) | {o for n in nodes for o in n.output if o}
    graph = onnx.helper.make_graph(
        nodes,
        f"{fn.domain}.{fn.name}",
        [onnx.ValueInfoProto(name=n) for n in fn.input],
        [onnx.ValueInfoProto(name=n) for n in fn.output if n in available],
    )
    opsets = dict(base_config.opsets)
    for imp in fn.opset_import:
        opsets[normalize_domain(imp.domain)] = imp.version
    config = PlanConfig(opsets=opsets, functions=base_config.functions, session=base_config.session,
                        expand_ops=base_config.expand_ops)
    plan = GraphPlan(ir.serde.deserialize_graph(graph), config, overridable_initializers=False)
    plan.function_output_positions = [i for i, n in enumerate(fn.output) if n in available]  # type: ignore[attr-defined]
    plan.function_output_count = len(fn.output)  # type: ignore[attr-defined]
    return plan


def _kernel_for(plan: Any, n_inputs: int, n_outputs: int) -> Callable:
    n_fn_inputs = len(plan.input_names)
    positions = plan.function_output_positions
    n_fn_outputs = plan.function_output_count
    complete = positions == list(range(n_fn_outputs))

    def run_function(*args):
        feeds = list(args[:n_fn_inputs]) + [None] * (n_fn_inputs - len(args))
        outs = plan.run(feeds)
        if not complete:
            full: list[Any] = [None] * n_fn_outputs
            for pos, value in zip(positions, outs):
                full[pos] = value
            outs = full
        return tuple(outs) if n_outputs != 1 else outs[0]

    return run_function


def model_function_factory(fn: onnx.FunctionProto, base_config: Any) -> Callable[[KernelContext], Callable]:
    def factory(ctx: KernelContext) -> Callable:
        plan = _body_plan(fn, ctx, base_config)
        return _kernel_for(plan, ctx.num_inputs, ctx.num_outputs)

    return factory


def _pick_version(versions: list[int], opset: int) -> int:
    """The function body to use at ``opset``: the newest one not above it, else the oldest there is.

    A body carries its own opset imports, so one written against a newer opset still computes the op's
    semantics for an older model (Relu-14's only body is written with opset-18 ops).
    """
    usable = [v for v in versions if v <= opset]
    if usable:
        return max(usable)
    if versions:
        return min(versions)
    return opset


def schema_function_factory(schema: onnx.defs.OpSchema, base_config: Any) -> Callable[[KernelContext], Callable]:
    def factory(ctx: KernelContext) -> Callable:
        node_proto = ir.serde.serialize_node(ctx.node)  # type: ignore[attr-defined]
        if schema.has_function:
            version = _pick_version(list(schema.function_opset_versions), ctx.opset)
            fn = onnx.FunctionProto.FromString(schema.get_function_with_opset_version(version))
            if not fn.node:
                raise Fail(f"{ctx.describe()}: ONNX defines no function body for this op at opset {ctx.opset}.")
            return _kernel_for(_body_plan(fn, ctx, base_config, schema), ctx.num_inputs, ctx.num_outputs)

        version = _pick_version(list(schema.context_dependent_function_opset_versions), ctx.opset)

        def expand(type_protos: list[onnx.TypeProto]):
            data = schema.get_context_dependent_function_with_opset_version(
                version, node_proto.SerializeToString(), [tp.SerializeToString() for tp in type_protos]
            )
            if not data:
                raise Fail(f"{ctx.describe()}: ONNX could not expand the function body for these input types.")
            fn = onnx.FunctionProto.FromString(data)
            return _kernel_for(_body_plan(fn, ctx, base_config, schema), ctx.num_inputs, ctx.num_outputs)

        static_types = [type_to_proto(t) for t in ctx.input_types]
        if ctx.num_inputs and all(tp is not None and tp.WhichOneof("value") for tp in static_types):
            return expand(static_types)  # type: ignore[arg-type]

        cache: dict[tuple, Callable] = {}
        lock = threading.Lock()

        def run_expanded(*args):
            key = tuple(a.dtype if isinstance(a, np.ndarray) else type(a) for a in args)
            kernel = cache.get(key)
            if kernel is None:
                with lock:
                    kernel = cache.get(key)
                    if kernel is None:
                        protos = [_runtime_type(a) for a in args]
                        kernel = cache[key] = expand(protos)
            return kernel(*args)

        return run_expanded

    return factory


def _runtime_type(value: Any) -> onnx.TypeProto:
    from onnxrt.types import onnx_elem_type

    if value is None:
        return onnx.TypeProto()
    if isinstance(value, np.ndarray):
        return onnx.helper.make_tensor_type_proto(onnx_elem_type(value.dtype), list(value.shape))
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return onnx.helper.make_sequence_type_proto(
            onnx.helper.make_tensor_type_proto(onnx_elem_type(value[0].dtype), None)
        )
    return onnx.TypeProto()
