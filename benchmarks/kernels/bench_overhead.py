"""Per-node overhead: a chain of N tiny nodes (4-element float32), onnxrt vs onnxruntime, interleaved.

    python benchmarks/kernels/bench_overhead.py [--nodes 1000] [--runs 20] [--ops Add,Relu]

Prints the median time per node (end to end: session.run divided by the node count).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def chain_model(n_nodes: int, ops: list[str]):
    nodes, prev = [], "X"
    inits = [numpy_helper.from_array(np.full(4, 0.5, np.float32), "c")]
    for i in range(n_nodes):
        op_type = ops[i % len(ops)]
        out = f"t{i}"
        inputs = [prev, "c"] if op_type in ("Add", "Sub", "Mul", "Div", "Max", "Min") else [prev]
        nodes.append(helper.make_node(op_type, inputs, [out]))
        prev = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def main() -> None:
    import onnxruntime

    import onnxrt

    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--ops", default="Add,Relu")
    args = ap.parse_args()
    data = chain_model(args.nodes, args.ops.split(",")).SerializeToString()
    # no graph optimisation: the chain must stay as it is in both runtimes
    so = onnxrt.SessionOptions()
    so.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL
    mine = onnxrt.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    so2 = onnxruntime.SessionOptions()
    so2.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = onnxruntime.InferenceSession(data, so2, providers=["CPUExecutionProvider"])
    feeds = {"X": np.arange(4, dtype=np.float32)}
    np.testing.assert_allclose(mine.run(None, feeds)[0], ref.run(None, feeds)[0], rtol=1e-5)
    t_mine, t_ref = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        mine.run(None, feeds)
        t_mine.append(time.perf_counter() - t)
        t = time.perf_counter()
        ref.run(None, feeds)
        t_ref.append(time.perf_counter() - t)
    a = np.median(t_mine) / args.nodes * 1e6
    b = np.median(t_ref) / args.nodes * 1e6
    print(f"{args.nodes} x {args.ops}: onnxrt {a:.2f} us/node  onnxruntime {b:.2f} us/node  ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
