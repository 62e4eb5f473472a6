"""Helpers shared by the optimizer passes (onnxrt.optimizer._ir)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxrt.optimizer import _ir


def _chain_graph(reverse: bool) -> tuple[ir.Graph, list[ir.Node]]:
    x = ir.Value(name="x", shape=ir.Shape([2]), type=ir.TensorType(ir.DataType.FLOAT))
    first = ir.Node("", "Relu", [x], name="first")
    second = ir.Node("", "Neg", [first.outputs[0]], name="second")
    nodes = [second, first] if reverse else [first, second]
    graph = ir.Graph([x], [second.outputs[0]], nodes=nodes, opset_imports={"": 21})
    return graph, [first, second]


def test_sort_if_needed_sorts_out_of_order_graph():
    graph, (first, second) = _chain_graph(reverse=True)
    _ir.sort_if_needed(graph)
    assert list(graph) == [first, second]


def test_sort_if_needed_leaves_sorted_graph_alone():
    graph, nodes = _chain_graph(reverse=False)
    _ir.sort_if_needed(graph)
    assert list(graph) == nodes


def test_add_initializer_numeric_and_string_arrays():
    graph, _ = _chain_graph(reverse=False)
    for array in (np.arange(3, dtype=np.int64), np.array(2.5, np.float32), np.array(["a", "b"], dtype=object)):
        value = _ir.add_initializer(graph, array, "c")
        assert graph.initializers[value.name] is value
        assert value.shape == ir.Shape(array.shape)
