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
