"""quantize_dynamic and quantize_static: rewrite a float model into a quantized ONNX model.

Weights are quantized here, once (per tensor, or per output channel). Activations are quantized either
at run time (dynamic: ``DynamicQuantizeLinear`` before ``MatMulInteger``/``ConvInteger``) or with ranges
measured on calibration data (static), written as QuantizeLinear/DequantizeLinear pairs (QDQ format) or
as quantized operators (QOperator format: ``QLinearConv``, ``QLinearMatMul`` and onnxruntime's
com.microsoft ``QLinearAdd``, ``QGemm``, ... ).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxrt.quantization.calibrate import (CalibrationDataReader, RangeCollector, as_reader, run_with_intermediates,
                                           try_rewind)
from onnxrt.quantization.report import QuantizationReport, build_report
from onnxrt.quantization.types import CalibrationMethod, QuantFormat, QuantType

ModelInput = str | os.PathLike | onnx.ModelProto

DYNAMIC_OP_TYPES = ("MatMul", "Gemm", "Conv", "Gather")
STATIC_OP_TYPES = ("MatMul", "Gemm", "Conv", "Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool",
                   "GlobalAveragePool", "Concat", "Softmax")
MS_DOMAIN = "com.microsoft"


# ---- numerics ---------------------------------------------------------------------------------
def compute_scale_zero_point(rmin: np.ndarray | float, rmax: np.ndarray | float, qtype: QuantType,
                             symmetric: bool, reduce_range: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point mapping [rmin, rmax] (widened to include 0) onto qtype's integer range."""
    rmin = np.minimum(np.asarray(rmin, np.float64), 0.0)
    rmax = np.maximum(np.asarray(rmax, np.float64), 0.0)
    qmin, qmax = qtype.qrange(symmetric, reduce_range)
    if symmetric:
        absmax = np.maximum(np.abs(rmin), np.abs(rmax))
        scale = 2.0 * absmax / (qmax - qmin)
        zero_point = np.full(scale.shape, (qmin + qmax) // 2 if not qtype.signed else 0, np.float64)
        if not qtype.signed:  # unsigned symmetric: zero point in the middle
            zero_point = np.full(scale.shape, (qmax + 1) // 2, np.float64)
    else:
        scale = (rmax - rmin) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zero_point = np.clip(np.rint(qmin - rmin / safe), qmin, qmax)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return scale, zero_point.astype(np.int64)


def quantize_array(values: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, qtype: QuantType,
                   axis: int | None = None, symmetric: bool = False, reduce_range: bool = False) -> np.ndarray:
    """round(values / scale) + zero_point, saturated to the quantization range, in qtype's dtype."""
    values = np.asarray(values, np.float32)
    if axis is not None:
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    qmin, qmax = qtype.qrange(symmetric, reduce_range)
    q = np.clip(np.rint(values / scale) + zero_point, qmin, qmax)
    return q.astype(np.int64).astype(qtype.numpy_dtype)


class _Weight:
    """A quantized constant: initializers for the values, scale and zero point."""

    def __init__(self, q_name: str, scale_name: str, zp_name: str, scale: np.ndarray, zero_point: np.ndarray,
                 axis: int | None):
        self.q_name, self.scale_name, self.zp_name = q_name, scale_name, zp_name
        self.scale, self.zero_point, self.axis = scale, zero_point, axis


class _Rewriter:
    """Shared machinery: selection of nodes, initializers, fresh names."""

    def __init__(self, model: onnx.ModelProto, op_types: Sequence[str], nodes_to_quantize: Iterable[str] | None,
                 nodes_to_exclude: Iterable[str] | None, per_channel: bool, reduce_range: bool,
                 weight_type: QuantType, extra_options: dict[str, Any]):
        self.model = model
        self.graph = model.graph
        self.op_types = set(op_types)
        self.nodes_to_quantize = set(nodes_to_quantize) if nodes_to_quantize else None
        self.nodes_to_exclude = set(nodes_to_exclude or ())
        self.per_channel = per_channel
        self.reduce_range = reduce_range
        self.weight_type = weight_type
        self.options = extra_options
        self.weight_symmetric = bool(extra_options.get("WeightSymmetric", weight_type.signed))
        self.activation_symmetric = bool(extra_options.get("ActivationSymmetric", False))
        graph_inputs = {i.name for i in self.graph.input}
        self.initializers = {t.name: t for t in self.graph.initializer if t.name not in graph_inputs}
        self.new_initializers: list[TensorProto] = []
        self.names = {n for node in self.graph.node for n in itertools.chain(node.input, node.output)}
        self.names.update(self.initializers)
        self.names.update(i.name for i in self.graph.input)
        self.counter = itertools.count()
        self.weights: dict[tuple, _Weight] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.graph_outputs = {o.name for o in self.graph.output}
        missing = (self.nodes_to_quantize or set()) - {n.name for n in self.graph.node}
        if missing:
            raise ValueError(f"nodes_to_quantize names nodes not in the model: {sorted(missing)}")

    def selected(self, node: onnx.NodeProto) -> bool:
        if node.domain not in ("", "ai.onnx") or node.op_type not in self.op_types:
            return False
        if node.name in self.nodes_to_exclude:
            return False
        return self.nodes_to_quantize is None or node.name in self.nodes_to_quantize

    def fresh(self, base: str) -> str:
        name = base
        while name in self.names:
            name = f"{base}_{next(self.counter)}"
        self.names.add(name)
        return name

    def add_initializer(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        self.new_initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def const_float(self, name: str) -> np.ndarray | None:
        tensor = self.initializers.get(name)
        if tensor is None or tensor.data_type != TensorProto.FLOAT:
            return None
        return numpy_helper.to_array(tensor)

    def quantize_weight(self, name: str, axis: int | None, qtype: QuantType | None = None,
                        array: np.ndarray | None = None, key_suffix: str = "") -> _Weight:
        """Quantize a constant (per channel along ``axis`` when given) and register its initializers."""
        qtype = qtype or self.weight_type
        key = (name, axis, qtype, key_suffix)
        if key in self.weights:
            return self.weights[key]
        values = self.const_float(name) if array is None else array
        if axis is None:
            rmin, rmax = np.array(values.min()), np.array(values.max())
        else:
            moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
            rmin, rmax = moved.min(axis=1), moved.max(axis=1)
        scale, zero_point = compute_scale_zero_point(rmin, rmax, qtype, self.weight_symmetric, self.reduce_range)
        q = quantize_array(values, scale, zero_point, qtype, axis, self.weight_symmetric, self.reduce_range)
        base = name + key_suffix
        weight = _Weight(self.add_initializer(q, f"{base}_quantized"),
                         self.add_initializer(scale if axis is not None else scale.reshape(()), f"{base}_scale"),
                         self.add_initializer((zero_point if axis is not None else zero_point.reshape(())).astype(
                             qtype.numpy_dtype), f"{base}_zero_point"),
                         scale, zero_point, axis)
        self.weights[key] = weight
        return weight

    def finish(self, nodes: list[onnx.NodeProto]) -> onnx.ModelProto:
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        self.graph.initializer.extend(self.new_initializers)
        used = {n for node in self.graph.node for n in node.input} | self.graph_outputs
        for g in _subgraphs(self.graph):
            used.update(n for node in g.node for n in node.input)
        keep = [t for t in self.graph.initializer if t.name in used or t.name not in self.initializers]
        keep = [t for t in keep if t.name in used or t.name in {i.name for i in self.graph.input}]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)
        del self.graph.value_info[:]  # stale after rewriting; onnx shape inference can restore it
        if any(n.domain == MS_DOMAIN for n in self.graph.node) and \
                not any(o.domain == MS_DOMAIN for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        return self.model


def _subgraphs(graph: onnx.GraphProto):
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield attr.g
                yield from _subgraphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield g
                    yield from _subgraphs(g)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _weight_axis(node: onnx.NodeProto, weight_rank: int) -> int | None:
    """Output-channel axis of the node's weight (input 1), for per-channel quantization."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if _attrs(node).get("transB", 0) else 1
    if node.op_type == "MatMul":
        return weight_rank - 1
    return None


# ---- loading, saving --------------------------------------------------------------------------
def load_model(model_input: ModelInput) -> onnx.ModelProto:
    if isinstance(model_input, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(model_input)
        return model
    if isinstance(model_input, (str, os.PathLike)):
        path = Path(model_input)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        return onnx.load(str(path))
    raise TypeError(f"model_input must be a path or an onnx.ModelProto, got {type(model_input).__name__}")


def save_model(model: onnx.ModelProto, model_output: str | os.PathLike | None, use_external_data: bool = False) -> None:
    if model_output is None:
        return
    path = Path(model_output)
    path.parent.mkdir(parents=True, exist_ok=True)
    if use_external_data or model.ByteSize() > 2**31 - 1024:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))


def _check_op_types(op_types: Iterable[str] | None, supported: Sequence[str], api: str) -> list[str]:
    if op_types is None:
        return list(supported)
    op_types = list(op_types)
    unknown = [o for o in op_types if o not in supported]
    if unknown:
        raise ValueError(f"{api}: cannot quantize op types {unknown}; supported: {list(supported)}")
    return op_types


def _ensure_opset(model: onnx.ModelProto, minimum: int, why: str) -> None:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            if imp.version < minimum:
                raise ValueError(f"{why} needs ai.onnx opset >= {minimum}, the model has opset {imp.version}; "
                                 f"convert it first (onnx.version_converter.convert_version)")


# ---- dynamic ----------------------------------------------------------------------------------
def _dynamic_rewrite(r: _Rewriter) -> list[onnx.NodeProto]:
    nodes: list[onnx.NodeProto] = []
    dynamic_q: dict[str, tuple[str, str, str]] = {}  # float activation -> (uint8, scale, zero point)

    def quantize_activation(name: str) -> tuple[str, str, str]:
        if name not in dynamic_q:
            out = (r.fresh(f"{name}_quantized"), r.fresh(f"{name}_scale"), r.fresh(f"{name}_zero_point"))
            nodes.append(helper.make_node("DynamicQuantizeLinear", [name], list(out),
                                          name=r.fresh(f"{name}_DynamicQuantizeLinear")))
            dynamic_q[name] = out
        return dynamic_q[name]

    for node in r.graph.node:
        if not r.selected(node):
            nodes.append(node)
            continue
        op = node.op_type
        if op == "Gather":
            data = r.const_float(node.input[0])
            if data is None:
                nodes.append(node)
                continue
            w = r.quantize_weight(node.input[0], None)
            gathered = r.fresh(f"{node.output[0]}_quantized")
            nodes.append(helper.make_node("Gather", [w.q_name, node.input[1]], [gathered], name=node.name,
                                          axis=_attrs(node).get("axis", 0)))
            nodes.append(helper.make_node("DequantizeLinear", [gathered, w.scale_name, w.zp_name], [node.output[0]],
                                          name=r.fresh(f"{node.name}_DequantizeLinear")))
            continue
        weight = r.const_float(node.input[1]) if len(node.input) > 1 else None
        attrs = _attrs(node)
        if weight is None or (op == "Gemm" and attrs.get("transA", 0)) or (op == "MatMul" and weight.ndim != 2):
            nodes.append(node)
            continue
        bias_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if op == "Gemm":
            if attrs.get("transB", 0):
                weight = weight.T
            w = r.quantize_weight(node.input[1], 1 if r.per_channel else None, array=np.ascontiguousarray(weight),
                                  key_suffix="_gemm")
        else:
            w = r.quantize_weight(node.input[1], _weight_axis(node, weight.ndim) if r.per_channel else None)
        xq, xs, xzp = quantize_activation(node.input[0])
        acc = r.fresh(f"{node.output[0]}_int32")
        if op == "Conv":
            if w.axis is None:
                w_zp_name = w.zp_name
            else:  # ConvInteger takes a per-output-channel zero point as a 1-D tensor
                w_zp_name = w.zp_name
            nodes.append(helper.make_node("ConvInteger", [xq, w.q_name, xzp, w_zp_name], [acc], name=node.name,
                                          **attrs))
            channel_shape = [-1] + [1] * (weight.ndim - 2)
        else:
            nodes.append(helper.make_node("MatMulInteger", [xq, w.q_name, xzp, w.zp_name], [acc], name=node.name))
            channel_shape = [-1]
        accf = r.fresh(f"{node.output[0]}_float")
        nodes.append(helper.make_node("Cast", [acc], [accf], to=TensorProto.FLOAT, name=r.fresh(f"{node.name}_Cast")))
        w_scale = w.scale.reshape(channel_shape) if w.axis is not None else w.scale.reshape(())
        if op == "Gemm":
            w_scale = w_scale * np.float32(attrs.get("alpha", 1.0))
        w_scale_name = r.add_initializer(w_scale.astype(np.float32), f"{node.input[1]}_scale_{node.name or 'node'}")
        combined = r.fresh(f"{node.output[0]}_scale")
        nodes.append(helper.make_node("Mul", [xs, w_scale_name], [combined], name=r.fresh(f"{node.name}_scale_Mul")))
        has_bias = bias_name is not None and not (op == "Gemm" and attrs.get("beta", 1.0) == 0.0)
        scaled = r.fresh(f"{node.output[0]}_nobias") if has_bias else node.output[0]
        nodes.append(helper.make_node("Mul", [accf, combined], [scaled], name=r.fresh(f"{node.name}_output_Mul")))
        if has_bias:
            bias_input = bias_name
            bias = r.const_float(bias_name)
            if op == "Conv":
                bias_input = r.add_initializer(bias.reshape(channel_shape), f"{bias_name}_reshaped") \
                    if bias is not None else bias_name
            elif op == "Gemm" and attrs.get("beta", 1.0) != 1.0:
                if bias is None:
                    nodes.append(node)
                    continue
                bias_input = r.add_initializer(bias * np.float32(attrs["beta"]), f"{bias_name}_scaled")
            nodes.append(helper.make_node("Add", [scaled, bias_input], [node.output[0]],
                                          name=r.fresh(f"{node.name}_bias_Add")))
    return nodes


def quantize_dynamic(
    model_input: ModelInput,
    model_output: str | os.PathLike | None,
    op_types_to_quantize: Sequence[str] | None = None,
    per_channel: bool = False,
    reduce_range: bool = False,
    weight_type: QuantType = QuantType.QInt8,
    nodes_to_quantize: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] | None = None,
    use_external_data_format: bool = False,
    extra_options: dict[str, Any] | None = None,
    report_data: CalibrationDataReader | list | None = None,
) -> QuantizationReport:
    """Quantize weights ahead of time and activations at run time (uint8, DynamicQuantizeLinear).

    Quantizes MatMul/Gemm (MatMulInteger), Conv (ConvInteger) with constant weights and Gather on a
    constant table (embeddings: int8 table + DequantizeLinear). ``report_data`` (optional feeds) adds
    the float-vs-quantized output difference to the returned report.
    """
    if weight_type not in (QuantType.QInt8, QuantType.QUInt8):
        raise ValueError(f"quantize_dynamic: weight_type must be QInt8 or QUInt8, got {weight_type}")
    extra_options = dict(extra_options or {})
    float_model = load_model(model_input)
    model = load_model(float_model)
    _ensure_opset(model, 11, "dynamic quantization (DynamicQuantizeLinear)")
    op_types = _check_op_types(op_types_to_quantize, DYNAMIC_OP_TYPES, "quantize_dynamic")
    r = _Rewriter(model, op_types, nodes_to_quantize, nodes_to_exclude, per_channel, reduce_range, weight_type,
                  extra_options)
    quantized = r.finish(_dynamic_rewrite(r))
    onnx.checker.check_model(quantized)
    save_model(quantized, model_output, use_external_data_format)
    return build_report(float_model, quantized, as_reader(report_data) if report_data is not None else None,
                        model_output, show_progress=extra_options.get("ShowProgress", False))


# ---- static -----------------------------------------------------------------------------------
def _static_candidates(r: _Rewriter) -> tuple[list[onnx.NodeProto], list[str]]:
    """Selected nodes and the float activations whose ranges calibration must measure."""
    float_types = _float_value_names(r.model)
    selected = [n for n in r.graph.node if r.selected(n)]
    tensors: list[str] = []
    seen: set[str] = set()
    for node in selected:
        for name in itertools.chain(node.input, node.output):
            if name and name not in seen and name not in r.initializers and name in float_types:
                seen.add(name)
                tensors.append(name)
    return selected, tensors


def _float_value_names(model: onnx.ModelProto) -> set[str]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001
        inferred = model
    g = inferred.graph
    names = {v.name for v in itertools.chain(g.input, g.output, g.value_info)
             if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type == TensorProto.FLOAT}
    names.update(t.name for t in g.initializer if t.data_type == TensorProto.FLOAT)
    return names


def calibrate(model: onnx.ModelProto, tensor_names: list[str], reader: CalibrationDataReader,
              method: CalibrationMethod, extra_options: dict[str, Any]) -> dict[str, tuple[float, float]]:
    collector = RangeCollector(method, extra_options)
    for values in run_with_intermediates(model, tensor_names, reader, extra_options.get("ShowProgress", True)):
        collector.add(values)
    if not collector.minimum and tensor_names:
        raise ValueError("calibration_data_reader returned no data")
    return collector.ranges()


class _Activation:
    def __init__(self, scale: np.ndarray, zero_point: np.ndarray, scale_name: str, zp_name: str):
        self.scale, self.zero_point, self.scale_name, self.zp_name = scale, zero_point, scale_name, zp_name


def _activation_params(r: _Rewriter, ranges: dict[str, tuple[float, float]], activation_type: QuantType,
                       fixed: dict[str, tuple[float, float]]) -> dict[str, _Activation]:
    params = {}
    for name, (low, high) in itertools.chain(ranges.items(), fixed.items()):
        scale, zp = compute_scale_zero_point(low, high, activation_type, r.activation_symmetric)
        params[name] = _Activation(scale, zp, r.add_initializer(scale.reshape(()), f"{name}_scale"),
                                   r.add_initializer(zp.reshape(()).astype(activation_type.numpy_dtype),
                                                     f"{name}_zero_point"))
    return params


def _bias_int32(r: _Rewriter, bias_name: str, x: _Activation, w: _Weight) -> tuple[str, str, str]:
    bias = r.const_float(bias_name)
    scale = (x.scale.astype(np.float64) * w.scale.astype(np.float64)).astype(np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
    return (r.add_initializer(q, f"{bias_name}_quantized"),
            r.add_initializer(scale if w.axis is not None else scale.reshape(()), f"{bias_name}_scale"),
            r.add_initializer(np.zeros(scale.shape if w.axis is not None else (), np.int32), f"{bias_name}_zero_point"))


def _qdq_rewrite(r: _Rewriter, selected: list[onnx.NodeProto], act: dict[str, _Activation]) -> list[onnx.NodeProto]:
    selected_ids = {id(n) for n in selected}
    dequantized: dict[str, str] = {}  # float activation -> its QDQ output
    nodes: list[onnx.NodeProto] = []

    def qdq(name: str) -> str:
        if name not in dequantized:
            a = act[name]
            q, dq = r.fresh(f"{name}_QuantizeLinear_Output"), r.fresh(f"{name}_DequantizeLinear_Output")
            nodes.append(helper.make_node("QuantizeLinear", [name, a.scale_name, a.zp_name], [q],
                                          name=r.fresh(f"{name}_QuantizeLinear")))
            nodes.append(helper.make_node("DequantizeLinear", [q, a.scale_name, a.zp_name], [dq],
                                          name=r.fresh(f"{name}_DequantizeLinear")))
            dequantized[name] = dq
        return dequantized[name]

    def dq_weight(w: _Weight, out_base: str) -> str:
        out = r.fresh(f"{out_base}_DequantizeLinear_Output")
        kwargs = {"axis": w.axis} if w.axis is not None else {}
        nodes.append(helper.make_node("DequantizeLinear", [w.q_name, w.scale_name, w.zp_name], [out],
                                      name=r.fresh(f"{out_base}_DequantizeLinear"), **kwargs))
        return out

    # graph inputs feeding selected nodes get their QDQ pair first
    for node in r.graph.node:
        if id(node) in selected_ids:
            for i, name in enumerate(node.input):
                if name in act and name not in dequantized and not _produced_by_node(r, name):
                    qdq(name)
    for node in r.graph.node:
        new_inputs = list(node.input)
        if id(node) in selected_ids:
            op = node.op_type
            weighted = op in ("Conv", "MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in r.initializers
            if weighted and op == "Gemm" and _attrs(node).get("transA", 0):
                weighted = False
            for i, name in enumerate(node.input):
                if not name:
                    continue
                if name in act:
                    new_inputs[i] = qdq(name)
                elif i == 1 and weighted and r.const_float(name) is not None:
                    array = r.const_float(name)
                    axis = _weight_axis(node, array.ndim) if r.per_channel and array.ndim >= 2 else None
                    w = r.quantize_weight(name, axis)
                    new_inputs[1] = dq_weight(w, name)
                    if len(node.input) > 2 and node.input[2] and r.const_float(node.input[2]) is not None \
                            and node.input[0] in act and op != "MatMul":
                        if op == "Gemm" and _attrs(node).get("beta", 1.0) != 1.0:
                            continue
                        if w.axis is not None and r.const_float(node.input[2]).shape != w.scale.shape:
                            continue
                        bq, bs, bzp = _bias_int32(r, node.input[2], act[node.input[0]], w)
                        out = r.fresh(f"{node.input[2]}_DequantizeLinear_Output")
                        kwargs = {"axis": 0} if w.axis is not None else {}
                        nodes.append(helper.make_node("DequantizeLinear", [bq, bs, bzp], [out],
                                                      name=r.fresh(f"{node.input[2]}_DequantizeLinear"), **kwargs))
                        new_inputs[2] = out
                elif r.const_float(name) is not None and op in ("Add", "Mul", "Concat") and r.const_float(name).size > 1:
                    w = r.quantize_weight(name, None, qtype=r.weight_type)
                    new_inputs[i] = dq_weight(w, name)
        else:
            # consumers outside the selection read the float value directly (no extra error)
            pass
        del node.input[:]
        node.input.extend(new_inputs)
        nodes.append(node)
        if id(node) in selected_ids:
            for name in node.output:
                if name in act and name not in r.graph_outputs:
                    dq = qdq(name)
                    for consumer in r.consumers.get(name, []):
                        if id(consumer) in selected_ids:
                            continue
                        for j, inp in enumerate(consumer.input):
                            if inp == name:
                                consumer.input[j] = dq
    return nodes


def _produced_by_node(r: _Rewriter, name: str) -> bool:
    return any(name in n.output for n in r.graph.node)


def _qoperator_rewrite(r: _Rewriter, selected: list[onnx.NodeProto], act: dict[str, _Activation],
                       activation_type: QuantType) -> list[onnx.NodeProto]:
    nodes: list[onnx.NodeProto] = []
    quantized: dict[str, str] = {}  # float name -> quantized name
    qparams: dict[str, _Activation] = dict(act)
    # which float values still need a float version (read by a float op or a graph output)
    convertible = {id(n) for n in selected if _qop_supported(r, n, act)}
    # Relu/Clip directly after a converted node whose output nothing else reads: folded into the
    # producer's output range (quantization saturates at the clip bounds)
    folded: dict[str, str] = {}
    producer = {o: n for n in r.graph.node for o in n.output}
    for node in r.graph.node:
        if node.op_type in ("Relu", "Clip") and id(node) in convertible:
            src = node.input[0]
            p = producer.get(src)
            if p is not None and id(p) in convertible and p.op_type in ("Conv", "MatMul", "Gemm", "Add") \
                    and len(r.consumers.get(src, [])) == 1 and src not in r.graph_outputs:
                folded[src] = node.output[0]
    for src, dst in folded.items():
        qparams[src] = qparams[dst]
    needs_float = set(r.graph_outputs)
    for node in r.graph.node:
        if id(node) not in convertible:
            needs_float.update(node.input)
    for g in _subgraphs(r.graph):
        needs_float.update(n for node in g.node for n in node.input)

    def q_input(name: str) -> tuple[str, _Activation]:
        a = qparams[name]
        if name not in quantized:
            out = r.fresh(f"{name}_quantized")
            nodes.append(helper.make_node("QuantizeLinear", [name, a.scale_name, a.zp_name], [out],
                                          name=r.fresh(f"{name}_QuantizeLinear")))
            quantized[name] = out
        return quantized[name], a

    def q_output(name: str) -> tuple[str, _Activation]:
        out = r.fresh(f"{name}_quantized")
        quantized[name] = out
        return out, qparams[name]

    def dequantize_outputs(names: Iterable[str]) -> None:
        for name in names:
            if name in needs_float and name in quantized:
                a = qparams[name]
                nodes.append(helper.make_node("DequantizeLinear", [quantized[name], a.scale_name, a.zp_name], [name],
                                              name=r.fresh(f"{name}_DequantizeLinear")))

    for node in r.graph.node:
        if id(node) not in convertible:
            nodes.append(node)
            continue
        op, attrs = node.op_type, _attrs(node)
        out_name = node.output[0]
        if op in ("Relu", "Clip") and node.input[0] in folded:
            quantized[out_name] = quantized[node.input[0]]
            dequantize_outputs([out_name])
            continue
        if op in ("Conv", "MatMul", "Gemm"):
            xq, xa = q_input(node.input[0])
            array = r.const_float(node.input[1])
            axis = _weight_axis(node, array.ndim) if r.per_channel and op != "MatMul" else None
            w = r.quantize_weight(node.input[1], axis)
            yq, ya = q_output(out_name)
            if op == "Conv":
                inputs = [xq, xa.scale_name, xa.zp_name, w.q_name, w.scale_name, w.zp_name, ya.scale_name, ya.zp_name]
                if len(node.input) > 2 and node.input[2]:
                    inputs.append(_bias_int32(r, node.input[2], xa, w)[0])
                nodes.append(helper.make_node("QLinearConv", inputs, [yq], name=node.name, **attrs))
            elif op == "MatMul":
                nodes.append(helper.make_node("QLinearMatMul", [xq, xa.scale_name, xa.zp_name, w.q_name, w.scale_name,
                                                                w.zp_name, ya.scale_name, ya.zp_name], [yq],
                                              name=node.name))
            else:
                inputs = [xq, xa.scale_name, xa.zp_name, w.q_name, w.scale_name, w.zp_name]
                if len(node.input) > 2 and node.input[2]:
                    bias = r.const_float(node.input[2]) * np.float32(attrs.get("beta", 1.0))
                    bias = np.broadcast_to(bias, (w.scale.size if w.axis is not None else bias.shape[-1],)) \
                        if bias.ndim <= 1 else bias
                    scale = (xa.scale * w.scale * np.float32(attrs.get("alpha", 1.0))).astype(np.float32)
                    inputs.append(r.add_initializer(np.rint(bias / scale).astype(np.int32), f"{node.input[2]}_quantized"))
                else:
                    inputs.append("")
                inputs += [ya.scale_name, ya.zp_name]
                nodes.append(helper.make_node("QGemm", inputs, [yq], name=node.name, domain=MS_DOMAIN,
                                              alpha=float(attrs.get("alpha", 1.0)), transA=0,
                                              transB=int(attrs.get("transB", 0))))
        elif op in ("Add", "Mul"):
            a_q, a_a = _q_operand(r, node.input[0], q_input, qparams)
            b_q, b_a = _q_operand(r, node.input[1], q_input, qparams)
            yq, ya = q_output(out_name)
            nodes.append(helper.make_node(f"QLinear{op}", [a_q, a_a.scale_name, a_a.zp_name, b_q, b_a.scale_name,
                                                           b_a.zp_name, ya.scale_name, ya.zp_name], [yq],
                                          name=node.name, domain=MS_DOMAIN))
        elif op == "MaxPool":
            xq, xa = q_input(node.input[0])
            qparams[out_name] = xa  # max of quantized values: same scale and zero point
            yq = r.fresh(f"{out_name}_quantized")
            quantized[out_name] = yq
            nodes.append(helper.make_node("MaxPool", [xq], [yq], name=node.name, **attrs))
        elif op in ("AveragePool", "GlobalAveragePool"):
            xq, xa = q_input(node.input[0])
            yq, ya = q_output(out_name)
            nodes.append(helper.make_node(f"QLinear{op}", [xq, xa.scale_name, xa.zp_name, ya.scale_name, ya.zp_name],
                                          [yq], name=node.name, domain=MS_DOMAIN, channels_last=0, **attrs))
        elif op == "Concat":
            yq, ya = q_output(out_name)
            inputs = [ya.scale_name, ya.zp_name]
            for name in node.input:
                xq, xa = _q_operand(r, name, q_input, qparams)
                inputs += [xq, xa.scale_name, xa.zp_name]
            nodes.append(helper.make_node("QLinearConcat", inputs, [yq], name=node.name, domain=MS_DOMAIN, **attrs))
        elif op == "Softmax":
            xq, xa = q_input(node.input[0])
            yq, ya = q_output(out_name)
            opset = next(o.version for o in r.model.opset_import if o.domain in ("", "ai.onnx"))
            nodes.append(helper.make_node("QLinearSoftmax", [xq, xa.scale_name, xa.zp_name, ya.scale_name, ya.zp_name],
                                          [yq], name=node.name, domain=MS_DOMAIN, axis=int(attrs.get(
                                              "axis", -1 if opset >= 13 else 1)), opset=opset))
        dequantize_outputs(node.output)
    return nodes


def _q_operand(r: _Rewriter, name: str, q_input, qparams: dict[str, _Activation]) -> tuple[str, _Activation]:
    if name in qparams:
        return q_input(name)
    w = r.quantize_weight(name, None, qtype=r.activation_type)  # constant operand: its own per-tensor range
    a = _Activation(w.scale, w.zero_point, w.scale_name, w.zp_name)
    return w.q_name, a


def _qop_supported(r: _Rewriter, node: onnx.NodeProto, act: dict[str, _Activation]) -> bool:
    op, attrs = node.op_type, _attrs(node)
    if not node.output or node.output[0] not in act:
        return False
    if op in ("Conv", "MatMul", "Gemm"):
        if node.input[0] not in act or len(node.input) < 2:
            return False
        w = r.const_float(node.input[1])
        if w is None or (op == "MatMul" and w.ndim != 2):
            return False
        if op == "Gemm" and (attrs.get("transA", 0) or (len(node.input) > 2 and node.input[2]
                                                        and r.const_float(node.input[2]) is None)):
            return False
        if op == "Conv" and len(node.input) > 2 and node.input[2] and r.const_float(node.input[2]) is None:
            return False
        return True
    if op in ("Add", "Mul"):
        ok = [n in act or r.const_float(n) is not None for n in node.input]
        return all(ok) and any(n in act for n in node.input)
    if op in ("Relu", "Clip"):
        return node.input[0] in act
    if op == "Concat":
        return all(n in act or r.const_float(n) is not None for n in node.input)
    if op == "MaxPool":
        return node.input[0] in act and len(node.output) == 1
    return node.input[0] in act


def quantize_static(
    model_input: ModelInput,
    model_output: str | os.PathLike | None,
    calibration_data_reader: CalibrationDataReader | list,
    quant_format: QuantFormat = QuantFormat.QDQ,
    op_types_to_quantize: Sequence[str] | None = None,
    per_channel: bool = False,
    reduce_range: bool = False,
    activation_type: QuantType = QuantType.QInt8,
    weight_type: QuantType = QuantType.QInt8,
    nodes_to_quantize: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] | None = None,
    use_external_data_format: bool = False,
    calibrate_method: CalibrationMethod = CalibrationMethod.MinMax,
    extra_options: dict[str, Any] | None = None,
) -> QuantizationReport:
    """Quantize weights and activations, with activation ranges measured by running the float model
    (on onnxrt) over ``calibration_data_reader``. Returns a :class:`QuantizationReport`; the quantized
    model is written to ``model_output`` (when not None) and is also ``report.model``."""
    extra_options = dict(extra_options or {})
    for name, value in (("quant_format", quant_format), ("activation_type", activation_type),
                        ("weight_type", weight_type), ("calibrate_method", calibrate_method)):
        expected = {"quant_format": QuantFormat, "calibrate_method": CalibrationMethod}.get(name, QuantType)
        if not isinstance(value, expected):
            raise TypeError(f"quantize_static: {name} must be a {expected.__name__}, got {value!r}")
    reader = as_reader(calibration_data_reader)
    float_model = load_model(model_input)
    model = load_model(float_model)
    wide = {QuantType.QInt16, QuantType.QUInt16, QuantType.QInt4, QuantType.QUInt4}
    if quant_format == QuantFormat.QDQ:
        _ensure_opset(model, 21 if {activation_type, weight_type} & wide else
                      (13 if per_channel else 10), "QDQ quantization with these types")
    else:
        if {activation_type, weight_type} & wide:
            raise ValueError("QOperator format supports only 8-bit types; use QuantFormat.QDQ for 16/4-bit")
        _ensure_opset(model, 12, "QOperator quantization")
    op_types = _check_op_types(op_types_to_quantize, STATIC_OP_TYPES, "quantize_static")
    r = _Rewriter(model, op_types, nodes_to_quantize, nodes_to_exclude, per_channel, reduce_range, weight_type,
                  extra_options)
    r.activation_type = activation_type  # type: ignore[attr-defined]
    selected, tensors = _static_candidates(r)
    ranges = calibrate(float_model, tensors, reader, calibrate_method, extra_options)
    fixed = {}
    for node in selected:  # softmax outputs are probabilities: a fixed [0, 1] range
        if node.op_type == "Softmax" and node.output[0] in ranges:
            fixed[node.output[0]] = (0.0, 1.0)
            ranges.pop(node.output[0])
    act = _activation_params(r, ranges, activation_type, fixed)
    if quant_format == QuantFormat.QDQ:
        nodes = _qdq_rewrite(r, selected, act)
    else:
        nodes = _qoperator_rewrite(r, selected, act, activation_type)
    quantized = r.finish(nodes)
    onnx.checker.check_model(quantized)
    save_model(quantized, model_output, use_external_data_format)
    try_rewind(reader)
    return build_report(float_model, quantized, reader if try_rewind(reader) else None, model_output,
                        show_progress=False)
