import numpy as np
from onnx import TensorProto, helper

from onnxrt.optimizer.fuse_layernorm import fuse_layer_norm, fuse_skip_layer_norm
from tests.optimizer.helpers import check_pass, const, make_model, op_counts, rand, vinfo


def _scalar(name, v):
    return const(name, np.array(v, np.float32))


def _ln_nodes(x, out, axes_input=False, square="Pow"):
    kw = {} if axes_input else {"axes": [-1]}
    extra = ["axes"] if axes_input else []
    sq = (helper.make_node("Pow", ["d", "two"], ["sq"]) if square == "Pow" else helper.make_node("Mul", ["d", "d"], ["sq"]))
    return [
        helper.make_node("ReduceMean", [x, *extra], ["mean"], **kw), helper.make_node("Sub", [x, "mean"], ["d"]), sq,
        helper.make_node("ReduceMean", ["sq", *extra], ["var"], **kw), helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["std"]), helper.make_node("Div", ["d", "std"], ["n"]),
        helper.make_node("Mul", ["n", "gamma"], ["ng"]), helper.make_node("Add", ["ng", "beta"], [out]),
    ]


INITS = [_scalar("two", 2.0), _scalar("eps", 1e-5), const("gamma", rand(8, seed=1)), const("beta", rand(8, seed=2)),
         const("axes", np.array([-1], np.int64))]


def test_layernorm_pattern_opset17_and_18():
    model = make_model(_ln_nodes("x", "y"), [vinfo("x", [2, 3, 8])], [vinfo("y", None)], INITS, opset=17)
    out = check_pass(model, {"x": rand(2, 3, 8)}, fuse_layer_norm, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"LayerNormalization": 1}
    model = make_model(_ln_nodes("x", "y", axes_input=True, square="Mul"), [vinfo("x", [2, 3, 8])], [vinfo("y", None)], INITS, opset=18)
    out = check_pass(model, {"x": rand(2, 3, 8)}, fuse_layer_norm, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"LayerNormalization": 1}


def test_layernorm_before_opset17_kept():
    model = make_model(_ln_nodes("x", "y"), [vinfo("x", [2, 3, 8])], [vinfo("y", None)], INITS, opset=13)
    check_pass(model, {"x": rand(2, 3, 8)}, fuse_layer_norm, expect_rewrites=False)


def test_rmsnorm_pattern_opset23():
    nodes = [
        helper.make_node("Pow", ["x", "two"], ["sq"]), helper.make_node("ReduceMean", ["sq", "axes"], ["ms"]),
        helper.make_node("Add", ["ms", "eps"], ["mse"]), helper.make_node("Sqrt", ["mse"], ["rms"]),
        helper.make_node("Div", ["x", "rms"], ["n"]), helper.make_node("Mul", ["gamma", "n"], ["y"]),
    ]
    model = make_model(nodes, [vinfo("x", [2, 3, 8])], [vinfo("y", None)], INITS, opset=23)
    out = check_pass(model, {"x": rand(2, 3, 8)}, fuse_layer_norm, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"RMSNormalization": 1}


def test_add_layernorm_becomes_skip_layernorm():
    nodes = [
        helper.make_node("Add", ["x", "skip"], ["s"]),
        helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["ln"], axis=-1, epsilon=1e-5),
        helper.make_node("Add", ["ln", "s"], ["y"]),  # the sum has a second reader: output 3 of SkipLayerNormalization
    ]
    model = make_model(nodes, [vinfo("x", [2, 3, 8]), vinfo("skip", [2, 3, 8])], [vinfo("y", None)], INITS)
    feeds = {"x": rand(2, 3, 8), "skip": rand(2, 3, 8, seed=5)}
    out = check_pass(model, feeds, fuse_skip_layer_norm, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"SkipLayerNormalization": 1, "Add": 1}


def test_projection_bias_folds_into_skip_layernorm_with_dynamic_shapes():
    # BERT's post-LN residual: LN(x @ W + bias + residual) where residual = LN(...) and x is computed
    # from the residual row by row; no static shapes anywhere, as torch exports it
    from onnxrt.optimizer.fuse_layernorm import fuse_skip_layer_norm as fuse

    nodes = [
        helper.make_node("LayerNormalization", ["x", "gamma", "beta"], ["r"], axis=-1, epsilon=1e-5),
        helper.make_node("MatMul", ["r", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("MatMul", ["hr", "W2"], ["p"]), helper.make_node("Add", ["p", "bias"], ["pb"]),
        helper.make_node("Add", ["pb", "r"], ["s"]),
        helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-5),
    ]
    inits = [*INITS, const("W1", rand(8, 12, seed=7)), const("W2", rand(12, 8, seed=8)), const("bias", rand(8, seed=9))]
    model = make_model(nodes, [vinfo("x", ["b", "s", 8])], [vinfo("y", None)], inits)
    out = check_pass(model, {"x": rand(2, 3, 8)}, fuse, rtol=1e-4, atol=1e-5)
    counts = op_counts(out)
    assert counts["SkipLayerNormalization"] == 1 and counts.get("Add", 0) == 0
    skip = next(n for n in out.graph.node if n.op_type == "SkipLayerNormalization")
    assert list(skip.input)[4] == "bias"


def test_skip_layernorm_left_alone_when_shapes_unproven():
    from onnxrt.optimizer.fuse_layernorm import fuse_skip_layer_norm as fuse

    nodes = [  # residual 'r' is a graph input: nothing shows it has the projection's shape
        helper.make_node("MatMul", ["x", "W2"], ["p"]), helper.make_node("Add", ["p", "bias"], ["pb"]),
        helper.make_node("Add", ["pb", "r"], ["s"]),
        helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-5),
    ]
    inits = [*INITS, const("W2", rand(12, 8, seed=8)), const("bias", rand(8, seed=9))]
    model = make_model(nodes, [vinfo("x", ["b", "s", 12]), vinfo("r", ["b", 1, 8])], [vinfo("y", None)], inits)
    check_pass(model, {"x": rand(2, 3, 12), "r": rand(2, 1, 8)}, fuse, expect_rewrites=False)


def test_layernorm_of_unknown_rank_from_negative_axes():
    # after a Reshape to a shape known only at run time the rank is unknown: axes [-1] and a (8,)
    # gamma say all that LayerNormalization needs
    def model_with(inits):
        nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), *_ln_nodes("r", "y")]
        inputs = [vinfo("x", [6, 8]), vinfo("shape", ["k"], TensorProto.INT64)]
        return make_model(nodes, inputs, [vinfo("y", ["a", "b", "c"])], inits, opset=17)

    feeds = {"x": rand(6, 8), "shape": np.array([2, 3, 8], np.int64)}
    out = check_pass(model_with(INITS), feeds, fuse_layer_norm, rtol=1e-4, atol=1e-5)
    assert op_counts(out) == {"Reshape": 1, "LayerNormalization": 1}
    ln = next(n for n in out.graph.node if n.op_type == "LayerNormalization")
    assert helper.get_attribute_value(next(a for a in ln.attribute if a.name == "axis")) == -1
    # a gamma of one element broadcasts where LayerNormalization's scale would not: nothing fused
    inits = [i for i in INITS if i.name not in ("gamma", "beta")] + [const("gamma", rand(1, seed=1)),
                                                                    const("beta", rand(1, seed=2))]
    check_pass(model_with(inits), feeds, fuse_layer_norm, rtol=1e-4, atol=1e-5, expect_rewrites=False)
