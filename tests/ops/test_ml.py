"""ai.onnx.ml kernels compared with onnxruntime on small hand-built models."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import onnxrt

ML_OPSET = 3


def _model(op_type, inputs, outputs, opset=ML_OPSET, **attrs):
    """inputs/outputs: list of (name, elem_type, shape)."""
    node = helper.make_node(op_type, [n for n, _, _ in inputs], [n for n, _, _ in outputs], domain="ai.onnx.ml", **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", opset)])
    m.ir_version = 8
    return m.SerializeToString()


def _both(model: bytes, feed: dict):
    ours = onnxrt.InferenceSession(model).run(None, feed)
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)
    return ours, ref


def _check(model, feed, rtol=1e-5, atol=1e-6):
    ours, ref = _both(model, feed)
    assert len(ours) == len(ref)
    for a, e in zip(ours, ref):
        assert a.dtype == e.dtype, (a.dtype, e.dtype)
        assert a.shape == e.shape, (a.shape, e.shape)
        if e.dtype == object or e.dtype.kind in "iub":
            np.testing.assert_array_equal(a, e)
        else:
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)
    return ours


F, I, S, D = TensorProto.FLOAT, TensorProto.INT64, TensorProto.STRING, TensorProto.DOUBLE
RNG = np.random.default_rng(0)


def _tree_attrs():
    # two trees over 3 features; tree 1 has a missing-value branch
    return dict(
        nodes_treeids=[0, 0, 0, 0, 0, 1, 1, 1],
        nodes_nodeids=[0, 1, 2, 3, 4, 0, 1, 2],
        nodes_featureids=[0, 1, 0, 0, 0, 2, 0, 0],
        nodes_values=[0.5, -0.2, 0, 0, 0, 0.1, 0, 0],
        nodes_modes=["BRANCH_LEQ", "BRANCH_GT", "LEAF", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 2, 0, 0, 0, 1, 0, 0],
        nodes_falsenodeids=[4, 3, 0, 0, 0, 2, 0, 0],
        nodes_missing_value_tracks_true=[0, 0, 0, 0, 0, 1, 0, 0],
    )


@pytest.mark.parametrize("agg", ["SUM", "AVERAGE", "MIN", "MAX"])
@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX"])
def test_tree_regressor_matches_ort(agg, post):
    attrs = _tree_attrs()
    model = _model(
        "TreeEnsembleRegressor", [("X", F, [None, 3])], [("Y", F, [None, 2])],
        n_targets=2, aggregate_function=agg, post_transform=post, base_values=[0.25, -0.5],
        target_treeids=[0, 0, 0, 0, 1, 1], target_nodeids=[2, 3, 4, 4, 1, 2], target_ids=[0, 1, 0, 1, 0, 0],
        target_weights=[1.0, 2.0, -3.0, 0.5, 4.0, -1.5], **attrs)
    X = RNG.normal(size=(50, 3)).astype(np.float32)
    X[3, 2] = np.nan
    _check(model, {"X": X})


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"])
@pytest.mark.parametrize("labels", [{"classlabels_int64s": [3, 7, 9]}, {"classlabels_strings": ["a", "b", "c"]}])
def test_tree_classifier_multiclass_matches_ort(post, labels):
    attrs = _tree_attrs()
    ytype = S if "classlabels_strings" in labels else I
    model = _model(
        "TreeEnsembleClassifier", [("X", F, [None, 3])], [("Y", ytype, [None]), ("Z", F, [None, 3])],
        post_transform=post, class_treeids=[0, 0, 0, 1, 1], class_nodeids=[2, 3, 4, 1, 2],
        class_ids=[0, 1, 2, 2, 0], class_weights=[0.2, 0.7, 0.1, 0.4, 0.3], **labels, **attrs)
    X = RNG.normal(size=(40, 3)).astype(np.float32)
    _check(model, {"X": X}, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "PROBIT"])
@pytest.mark.parametrize("weights", [[0.2, 0.7, 0.9, 0.4, 0.3], [0.2, -0.7, 0.9, 0.4, -0.3]])
@pytest.mark.parametrize("ids", [[1, 1, 1, 1, 1], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]])
@pytest.mark.parametrize("base", [[], [0.2, -0.3]])
def test_tree_classifier_binary_matches_ort(post, weights, ids, base):
    attrs = _tree_attrs()
    if base:
        attrs["base_values"] = base
    model = _model(
        "TreeEnsembleClassifier", [("X", F, [None, 3])], [("Y", I, [None]), ("Z", F, [None, 2])],
        post_transform=post, class_treeids=[0, 0, 0, 1, 1], class_nodeids=[2, 3, 4, 1, 2],
        class_ids=ids, class_weights=weights, classlabels_int64s=[0, 1], **attrs)
    X = RNG.normal(size=(40, 3)).astype(np.float32)
    if post == "PROBIT":  # onnxruntime's probit of scores outside (0, 1) is NaN/-inf: compare labels only
        ours, ref = _both(model, {"X": X})
        np.testing.assert_array_equal(ours[0], ref[0])
        return
    _check(model, {"X": X}, rtol=1e-4, atol=1e-5)


def test_tree_ensemble_v5_double_and_average():
    node_attrs = dict(
        n_targets=1, aggregate_function=0, post_transform=0, tree_roots=[0, 1],
        nodes_modes=helper.make_tensor("m", TensorProto.UINT8, (2,), [3, 4]),
        nodes_featureids=[0, 1],
        nodes_splits=helper.make_tensor("s", D, (2,), [0.0, 1.0]),
        nodes_truenodeids=[0, 2], nodes_trueleafs=[1, 1], nodes_falsenodeids=[1, 3], nodes_falseleafs=[1, 1],
        leaf_targetids=[0, 0, 0, 0], leaf_weights=helper.make_tensor("w", D, (4,), [1.0, 2.0, 10.0, 20.0]))
    model = _model("TreeEnsemble", [("X", D, [None, 2])], [("Y", D, [None, 1])], opset=5, **node_attrs)
    X = np.array([[1.0, 1.0], [-1.0, 0.0], [0.0, 1.0]])
    (y,) = _check(model, {"X": X})
    np.testing.assert_allclose(y, [[5.5], [11.0], [6.0]])
    assert y.dtype == np.float64


def test_label_encoder_float_nan_key_and_duplicates():
    model = _model("LabelEncoder", [("X", F, [None])], [("Y", I, [None])], opset=2,
                   keys_floats=[1.5, float("nan"), 2.0], values_int64s=[10, 20, 30], default_int64=-7)
    X = np.array([1.5, np.nan, 3.0, 2.0], dtype=np.float32)
    (y,) = onnxrt.InferenceSession(model).run(None, {"X": X})
    np.testing.assert_array_equal(y, [10, 20, -7, 30])


def test_linear_models_match_ort():
    coef = RNG.normal(size=12).astype(np.float32).tolist()
    X = RNG.normal(size=(6, 4)).astype(np.float32)
    _check(_model("LinearRegressor", [("X", F, [None, 4])], [("Y", F, [None, 3])], targets=3,
                  coefficients=coef, intercepts=[0.1, 0.2, 0.3]), {"X": X})
    for post in ("NONE", "SOFTMAX", "LOGISTIC"):
        _check(_model("LinearClassifier", [("X", F, [None, 4])], [("Y", I, [None]), ("Z", F, [None, 3])],
                      coefficients=coef, intercepts=[0.1, 0.2, 0.3], classlabels_ints=[4, 5, 6],
                      post_transform=post), {"X": X}, rtol=1e-4)


def test_linear_classifier_binary_matches_ort():
    X = RNG.normal(size=(6, 4)).astype(np.float32)
    for post in ("NONE", "LOGISTIC", "SOFTMAX"):
        _check(_model("LinearClassifier", [("X", F, [None, 4])], [("Y", S, [None]), ("Z", F, [None, 2])],
                      coefficients=[0.5, -1.0, 0.25, 2.0], intercepts=[0.1], classlabels_strings=["no", "yes"],
                      post_transform=post), {"X": X}, rtol=1e-4)


def test_preprocessing_ops_match_ort():
    X = RNG.normal(size=(5, 3)).astype(np.float32)
    _check(_model("Scaler", [("X", F, [None, 3])], [("Y", F, [None, 3])], offset=[0.1, 0.2, 0.3], scale=[2.0, 3.0, 4.0]),
           {"X": X})
    for norm in ("MAX", "L1", "L2"):
        _check(_model("Normalizer", [("X", F, [None, 3])], [("Y", F, [None, 3])], norm=norm), {"X": X})
    Xn = X.copy()
    Xn[1, 1] = np.nan
    _check(_model("Imputer", [("X", F, [None, 3])], [("Y", F, [None, 3])], imputed_value_floats=[7.0, 8.0, 9.0],
                  replaced_value_float=float("nan")), {"X": Xn})
    Xi = np.array([[1, 5, 3], [5, 2, 9]], dtype=np.int64)
    _check(_model("OneHotEncoder", [("X", I, [None, 3])], [("Y", F, [None, 3, 4])], cats_int64s=[5, 1, 3, 2]),
           {"X": Xi})
    Xs = np.array(["b", "zz", "a"], dtype=object)
    _check(_model("CategoryMapper", [("X", S, [None])], [("Y", I, [None])], cats_strings=["a", "b"],
                  cats_int64s=[4, 6], default_int64=-2), {"X": Xs})
    _check(_model("FeatureVectorizer", [("A", F, [None, 2]), ("B", F, [None, 3])], [("Y", F, [None, 4])],
                  inputdimensions=[2, 2]), {"A": X[:, :2].copy(), "B": X + 1})
    _check(_model("ArrayFeatureExtractor", [("X", F, [None, 3]), ("I", I, [None])], [("Y", F, [None, None])]),
           {"X": X, "I": np.array([2, 0], dtype=np.int64)})


def test_zipmap_returns_list_of_dicts():
    # onnx_ir cannot load a model whose graph output is seq(map(...)) yet, so call the kernel directly
    from onnxrt.ops.ml import zipmap
    from onnxrt.ops.registry import KernelContext

    ctx = KernelContext("ZipMap", "ai.onnx.ml", "z", 1, 1, {"classlabels_int64s": [10, 20]}, 1, 1)
    out = zipmap(ctx)(np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32))
    assert out == [{10: 0.25, 20: 0.75}, {10: 1.0, 20: 0.0}]


def test_errors_name_the_op():
    model = _model("ArrayFeatureExtractor", [("X", F, [None, 3]), ("I", I, [None])], [("Y", F, [None, None])])
    with pytest.raises(Exception, match="ArrayFeatureExtractor"):
        onnxrt.InferenceSession(model).run(None, {"X": np.zeros((2, 3), np.float32), "I": np.array([3], np.int64)})


def _random_forest_attrs(rng, n_trees, depth, n_features, n_targets):
    """Complete random trees of the given depth, in the legacy node-list layout; leaf targets
    are a random non-empty subset of the targets (so some rows miss a target)."""
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                         "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
                         "target_treeids", "target_nodeids", "target_ids", "target_weights")}
    n_branch = 2 ** depth - 1
    for t in range(n_trees):
        for nid in range(2 ** (depth + 1) - 1):
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(nid)
            if nid < n_branch:
                a["nodes_featureids"].append(int(rng.integers(n_features)))
                a["nodes_values"].append(float(np.float32(rng.standard_normal())))
                a["nodes_modes"].append(str(rng.choice(["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GT", "BRANCH_GTE"])))
                a["nodes_truenodeids"].append(2 * nid + 1)
                a["nodes_falsenodeids"].append(2 * nid + 2)
                a["nodes_missing_value_tracks_true"].append(int(rng.integers(2)))
            else:
                a["nodes_featureids"].append(0)
                a["nodes_values"].append(0.0)
                a["nodes_modes"].append("LEAF")
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                a["nodes_missing_value_tracks_true"].append(0)
                for k in range(n_targets):
                    if k == 0 or rng.random() < 0.6:
                        a["target_treeids"].append(t)
                        a["target_nodeids"].append(nid)
                        a["target_ids"].append(k)
                        a["target_weights"].append(float(rng.standard_normal()))
    return a


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("agg,n_targets", [("SUM", 3), ("AVERAGE", 1), ("MIN", 2), ("MAX", 1)])
def test_tree_regressor_split_over_threads(monkeypatch, dense, agg, n_targets):
    """Large enough to be walked in several row blocks on the intra-op pool: bit-identical to one
    thread, and equal to onnxruntime."""
    from onnxrt.ops import ml

    if not dense:
        monkeypatch.setattr(ml._Forest, "_DENSE_LEAF_LIMIT", 0)
    rng = np.random.default_rng(7)
    attrs = _random_forest_attrs(rng, n_trees=24, depth=5, n_features=6, n_targets=n_targets)
    model = _model("TreeEnsembleRegressor", [("X", F, [None, 6])], [("Y", F, [None, n_targets])],
                   n_targets=n_targets, aggregate_function=agg, **attrs)
    X = rng.standard_normal((5003, 6)).astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan
    outs = []
    for nt in (1, 3):
        so = onnxrt.SessionOptions()
        so.intra_op_num_threads = nt
        outs.append(onnxrt.InferenceSession(model, so).run(None, {"X": X})[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": X})[0]
    np.testing.assert_allclose(outs[1], ref, rtol=1e-5, atol=1e-5)


def test_tree_classifier_split_over_threads():
    rng = np.random.default_rng(11)
    attrs = _random_forest_attrs(rng, n_trees=30, depth=4, n_features=5, n_targets=3)
    attrs = {k.replace("target_", "class_"): v for k, v in attrs.items()}
    model = _model("TreeEnsembleClassifier", [("X", F, [None, 5])], [("label", I, [None]), ("probs", F, [None, 3])],
                   classlabels_int64s=[0, 1, 2], post_transform="SOFTMAX", **attrs)
    X = rng.standard_normal((4001, 5)).astype(np.float32)
    outs = []
    for nt in (1, 2):
        so = onnxrt.SessionOptions()
        so.intra_op_num_threads = nt
        outs.append(onnxrt.InferenceSession(model, so).run(None, {"X": X}))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    _check(model, {"X": X})


@pytest.mark.parametrize("change,message", [
    (dict(nodes_nodeids=[0, 1, 2, 3, 3, 0, 1, 2]), "defined twice"),
    (dict(nodes_falsenodeids=[4, 9, 0, 0, 0, 2, 0, 0]), r"points to missing node 9"),
    (dict(target_nodeids=[2, 3, 0, 1, 2]), r"refers to \(0, 0\), which is not a leaf"),
    (dict(target_treeids=[0, 0, 5, 1, 1]), r"refers to \(5, 4\), which is not a leaf"),
])
def test_tree_regressor_malformed_node_lists(change, message):
    targets = dict(target_treeids=[0, 0, 0, 1, 1], target_nodeids=[2, 3, 4, 1, 2], target_ids=[0] * 5,
                   target_weights=[1.0] * 5)
    attrs = {**_tree_attrs(), **targets, **change}
    model = _model("TreeEnsembleRegressor", [("X", F, [None, 3])], [("Y", F, [None, 1])], n_targets=1, **attrs)
    with pytest.raises(Exception, match=message):
        onnxrt.InferenceSession(model)


def test_long_attribute_lists_arrive_as_arrays():
    # lists longer than 4096 numbers reach the ai.onnx.ml kernels as numpy arrays (loader.ArrayAttr):
    # the kernels must not ask them for a truth value
    n = 5000
    x = RNG.standard_normal((3, n)).astype(np.float32)
    x[:, ::7] = np.nan
    _check(_model("Imputer", [("X", F, [None, n])], [("Y", F, [None, n])],
                  imputed_value_floats=RNG.standard_normal(n).astype(np.float32).tolist(), replaced_value_float=np.nan),
           {"X": x})
    xi = RNG.integers(-2, 3, (2, n)).astype(np.int64)
    _check(_model("Imputer", [("X", I, [None, n])], [("Y", I, [None, n])],
                  imputed_value_int64s=list(range(n)), replaced_value_int64=0), {"X": xi})
    # a linear classifier with more labels than the threshold
    labels = list(range(100, 100 + n))
    coef = RNG.standard_normal(n * 2).astype(np.float32).tolist()
    _check(_model("LinearClassifier", [("X", F, [None, 2])], [("Y", I, [None]), ("Z", F, [None, n])],
                  classlabels_ints=labels, coefficients=coef, intercepts=[0.0] * n),
           {"X": RNG.standard_normal((4, 2)).astype(np.float32)}, rtol=1e-4, atol=1e-5)


def test_dict_vectorizer_with_a_long_int_vocabulary():
    vocab = list(range(0, 10000, 2))  # 5000 keys
    node = helper.make_node("DictVectorizer", ["X"], ["Y"], domain="ai.onnx.ml", int64_vocabulary=vocab)
    map_type = helper.make_map_type_proto(I, helper.make_tensor_type_proto(F, None))
    graph = helper.make_graph([node], "g", [helper.make_value_info("X", map_type)],
                              [helper.make_tensor_value_info("Y", F, [None, len(vocab)])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    m.ir_version = 8
    feed = {"X": {4: 1.5, 9998: 2.0, 5: 3.0}}
    ours, ref = _both(m.SerializeToString(), feed)
    np.testing.assert_array_equal(ours[0], ref[0])
    assert ours[0][0, 2] == 1.5 and ours[0][0, -1] == 2.0 and ours[0].sum() == 3.5
