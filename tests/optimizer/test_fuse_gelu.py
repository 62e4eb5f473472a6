import math

import numpy as np
from onnx import helper

from onnxrt.optimizer.fuse_gelu import fuse_gelu
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo


def _scalar(name, v):
    return const(name, np.array(v, np.float32))


def test_erf_gelu_forms():
    # three associations of x * 0.5 * (1 + erf(x / sqrt2))
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["p"]), helper.make_node("Mul", ["x", "p"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["g1"]),
        helper.make_node("Mul", ["g1", "rsqrt2"], ["d2"]), helper.make_node("Erf", ["d2"], ["e2"]),
        helper.make_node("Add", ["one", "e2"], ["p2"]), helper.make_node("Mul", ["g1", "half"], ["h2"]),
        helper.make_node("Mul", ["h2", "p2"], ["y"]),
    ]
    inits = [_scalar("sqrt2", math.sqrt(2)), _scalar("one", 1.0), _scalar("half", 0.5), _scalar("rsqrt2", 1 / math.sqrt(2))]
    model = make_model(nodes, [vinfo("x", [2, 8])], [vinfo("y", None)], inits)
    out = check_pass(model, {"x": rand(2, 8) * 3}, fuse_gelu, rtol=1e-5, atol=1e-6)
    assert op_counts(out) == {"Gelu": 2}


def test_bias_gelu():
    nodes = [
        helper.make_node("Add", ["x", "bias"], ["xb"]),
        helper.make_node("Div", ["xb", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["p"]), helper.make_node("Mul", ["p", "half"], ["m"]),
        helper.make_node("Mul", ["m", "xb"], ["y"]),
    ]
    inits = [const("bias", rand(8, seed=3)), _scalar("sqrt2", 1.4142135), _scalar("one", 1.0), _scalar("half", 0.5)]
    model = make_model(nodes, [vinfo("x", [2, 3, 8])], [vinfo("y", None)], inits)
    out = check_pass(model, {"x": rand(2, 3, 8)}, fuse_gelu)
    assert op_counts(out) == {"BiasGelu": 1}


def test_tanh_gelu_pow_and_product_forms():
    def chain(x, tag, cube_nodes, cube):
        return [
            *cube_nodes,
            helper.make_node("Mul", [cube, "c044"], [f"k{tag}"]), helper.make_node("Add", [x, f"k{tag}"], [f"i{tag}"]),
            helper.make_node("Mul", [f"i{tag}", "c079"], [f"s{tag}"]), helper.make_node("Tanh", [f"s{tag}"], [f"t{tag}"]),
            helper.make_node("Add", [f"t{tag}", "one"], [f"p{tag}"]), helper.make_node("Mul", [x, "half"], [f"h{tag}"]),
            helper.make_node("Mul", [f"h{tag}", f"p{tag}"], [f"g{tag}"]),
        ]
    nodes = chain("x", "a", [helper.make_node("Pow", ["x", "three"], ["cubea"])], "cubea")
    nodes += chain("ga", "b", [helper.make_node("Mul", ["ga", "ga"], ["sqb"]), helper.make_node("Mul", ["sqb", "ga"], ["cubeb"])], "cubeb")
    nodes.append(helper.make_node("Identity", ["gb"], ["y"]))
    inits = [_scalar("c044", 0.044715), _scalar("c079", math.sqrt(2 / math.pi)), _scalar("one", 1.0), _scalar("half", 0.5),
             _scalar("three", 3.0)]
    model = make_model(nodes, [vinfo("x", [2, 8])], [vinfo("y", None)], inits)
    out = check_pass(model, {"x": rand(2, 8) * 3}, fuse_gelu, rtol=1e-5, atol=1e-5)
    assert op_counts(out) == {"FastGelu": 2, "Identity": 1}


def test_erf_with_wrong_constant_kept():
    nodes = [
        helper.make_node("Div", ["x", "two"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["p"]), helper.make_node("Mul", ["x", "p"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    inits = [_scalar("two", 2.0), _scalar("one", 1.0), _scalar("half", 0.5)]
    model = make_model(nodes, [vinfo("x", [2, 8])], [vinfo("y", None)], inits)
    check_pass(model, {"x": rand(2, 8)}, fuse_gelu, expect_rewrites=False)


def test_bias_gelu_with_a_symbolic_batch_dimension():
    """Exported models keep the batch symbolic: only the bias axis needs a static size."""
    import numpy as np
    from onnx import TensorProto as T
    from onnx import helper as h

    import onnxrt

    bias = h.make_tensor("bias", T.FLOAT, [4], [0.1, -0.2, 0.3, 0.0])
    nodes = [
        h.make_node("Add", ["bias", "x"], ["xb"]),
        h.make_node("Div", ["xb", "sqrt2"], ["d"]),
        h.make_node("Erf", ["d"], ["e"]),
        h.make_node("Add", ["e", "one"], ["e1"]),
        h.make_node("Mul", ["xb", "e1"], ["m"]),
        h.make_node("Mul", ["m", "half"], ["y"]),
    ]
    inits = [bias, h.make_tensor("sqrt2", T.FLOAT, [], [2 ** 0.5]), h.make_tensor("one", T.FLOAT, [], [1.0]),
             h.make_tensor("half", T.FLOAT, [], [0.5])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["batch", 3, 4])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["batch", 3, 4])], inits)
    data = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()
    session = onnxrt.InferenceSession(data)
    assert [s.op_type for s in session._plan.steps] == ["BiasGelu"]
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    options = onnxrt.SessionOptions()
    options.graph_optimization_level = onnxrt.GraphOptimizationLevel.ORT_DISABLE_ALL
    np.testing.assert_allclose(session.run(None, {"x": x})[0],
                               onnxrt.InferenceSession(data, options).run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
