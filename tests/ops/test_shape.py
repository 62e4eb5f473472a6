"""Shape / tensor-manipulation and gather/scatter kernels: cases the ONNX node suite does not cover.

Most tests build a one-node model and compare onnxrt with onnxruntime on the same inputs (exact dtype
and shape); the rest check errors and properties (views, strings) onnxruntime cannot tell us about.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import onnxrt
from onnxrt.errors import OrtError

_NP2ONNX = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.float16): TensorProto.FLOAT16,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.bool_): TensorProto.BOOL,
    np.dtype(object): TensorProto.STRING,
}


def _model(op_type, inputs, n_out=1, opset=21, consts=(), **attrs):
    """One-node model; ``inputs`` are arrays (None = omitted); indices in ``consts`` become initializers."""
    names, graph_inputs, inits, feeds = [], [], [], {}
    for i, x in enumerate(inputs):
        if x is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        x = np.asarray(x)
        if i in consts:
            inits.append(onnx.numpy_helper.from_array(x, name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, _NP2ONNX[x.dtype], None))
            feeds[name] = x
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op_type, names, outs, **attrs)
    graph = helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name=o) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset < 21 else 10
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for out in model.graph.output:
        if out.name in inferred:
            out.type.CopyFrom(inferred[out.name].type)
    return model.SerializeToString(), feeds


def _run_ours(op_type, inputs, n_out=1, opset=21, consts=(), **attrs):
    blob, feeds = _model(op_type, inputs, n_out, opset, consts, **attrs)
    return onnxrt.InferenceSession(blob).run(None, feeds)


def check(op_type, inputs, n_out=1, opset=21, consts=(), **attrs):
    blob, feeds = _model(op_type, inputs, n_out, opset, consts, **attrs)
    expected = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, feeds)
    actual = onnxrt.InferenceSession(blob).run(None, feeds)
    assert len(actual) == len(expected)
    for e, a in zip(expected, actual):
        assert a.dtype == e.dtype, (a.dtype, e.dtype)
        assert a.shape == e.shape, (a.shape, e.shape)
        np.testing.assert_array_equal(a, e)
    return actual


def i64(*v):
    return np.array(v, dtype=np.int64)


RNG = np.random.default_rng(0)
X3 = RNG.standard_normal((2, 3, 4)).astype(np.float32)
STR = np.array([["a", "b", "c"], ["d", "e", "f"]], dtype=object)


# -- ops compared with onnxruntime ------------------------------------------------------------------


@pytest.mark.parametrize("starts,ends,axes,steps", [
    (i64(-10), i64(10), i64(2), i64(-1)),
    (i64(3, -1), i64(-100, 0), i64(2, 1), i64(-2, -1)),
    (i64(0), i64(-1), i64(-1), i64(3)),
    (i64(5), i64(-5), i64(0), i64(-1)),
    (i64(1), i64(np.iinfo(np.int64).max), i64(1), None),
])
def test_slice_clamping_matches_ort(starts, ends, axes, steps):
    check("Slice", [X3, starts, ends, axes, steps], opset=13)


def test_slice_opset1_attributes():
    check("Slice", [X3], opset=9, starts=[1, -3], ends=[100, -1], axes=[2, 1])


@pytest.mark.parametrize("n_out,dim", [(3, 7), (4, 10), (2, 2)])
def test_split_num_outputs_uneven(n_out, dim):
    x = np.arange(dim * 2, dtype=np.float32).reshape(2, dim)
    check("Split", [x], n_out=n_out, opset=18, axis=1, num_outputs=n_out)


def test_split_opset2_attribute_and_opset13_input():
    x = np.arange(12, dtype=np.int64)
    check("Split", [x], n_out=3, opset=2, split=[2, 4, 6])
    check("Split", [x, i64(5, 0, 7)], n_out=3, opset=13)
    check("Split", [x], n_out=3, opset=11)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_modes_with_negative_pads(mode):
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    check("Pad", [x, i64(2, -1, 1, 3)], opset=19, mode=mode)
    check("Pad", [x, i64(1, 2, 2, 1), np.array(1.5, np.float32)], opset=19, mode=mode)


@pytest.mark.parametrize("mode,shape,pads", [
    (mode, shape, pads)
    for shape, pads, modes in [
        ((1, 512), [0, 64, 0, 64], ("reflect", "edge", "wrap")),  # silero_vad's reflect pad of the audio chunk
        ((2, 3, 4, 5), [0, 1, 3, 4, 1, 0, 2, 4], ("reflect", "edge", "wrap")),  # every axis, widest reflect
        ((3, 4), [0, 4, 1, 4], ("edge", "wrap")),  # a whole period
        ((2, 3), [1, 5, 2, 7], ("edge", "wrap")),  # wider than the input: repeated wrap
    ]
    for mode in modes
])
def test_pad_border_modes_match_onnxruntime(mode, shape, pads):
    x = RNG.standard_normal(shape).astype(np.float32)
    check("Pad", [x, i64(*pads)], opset=19, mode=mode)
    check("Pad", [x.astype(np.int64), i64(*pads)], opset=19, mode=mode)


def test_pad_reflect_wider_than_the_input_reflects_again():
    # onnxruntime refuses reflect pads >= the axis length; onnxrt reflects repeatedly, as the ONNX
    # reference (np.pad) does
    from onnxrt.ops.shape import _pad

    x = RNG.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(_pad(x, [1, 5, 2, 7], "reflect", None, None), np.pad(x, [(1, 2), (5, 7)], "reflect"))


def test_pad_reflect_of_a_length_one_axis_repeats_it_beside_a_wider_reflection():
    from onnxrt.ops.shape import _pad

    # (onnxruntime refuses reflect on a length-1 axis; the ONNX reference, np.pad, repeats it)
    x = RNG.standard_normal((1, 3)).astype(np.float32)
    np.testing.assert_array_equal(_pad(x, [2, 5, 1, 7], "reflect", None, None), np.pad(x, [(2, 1), (5, 7)], "reflect"))
    np.testing.assert_array_equal(_pad(x, [2, 1, 1, 2], "reflect", None, None), np.pad(x, [(2, 1), (1, 2)], "reflect"))


def test_pad_plans_follow_the_shape_and_the_pads():
    # the border copies are worked out once per (shape, pads, mode): each call must get its own
    for shape in [(2, 6), (3, 5), (2, 6)]:
        x = RNG.standard_normal(shape).astype(np.float32)
        for pads in ([0, 2, 1, 3], [1, 1, 0, 4], [0, -1, 0, 2]):
            check("Pad", [x, i64(*pads)], opset=19, mode="reflect")


def test_pad_axes_and_old_attribute_form():
    x = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    check("Pad", [x, i64(1, 2), np.array(7, np.int32), i64(-1)], opset=18)
    check("Pad", [x.astype(np.float32)], opset=2, pads=[0, 1, 0, 0, 1, 0], value=3.0)


@pytest.mark.parametrize("largest", [0, 1])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_topk_ties_are_stable(largest, axis):
    x = RNG.integers(0, 3, size=(6, 5, 7)).astype(np.float32)
    k = 3
    check("TopK", [x, i64(k)], n_out=2, opset=11, axis=axis, largest=largest)


def test_topk_uint_and_old_opsets():
    x = RNG.integers(0, 4, size=(4, 6)).astype(np.uint8)
    check("TopK", [x, i64(4)], n_out=2, opset=11, largest=1)
    xf = RNG.integers(0, 4, size=(4, 6)).astype(np.float32)
    check("TopK", [xf], n_out=2, opset=1, k=2)
    check("TopK", [xf, i64(6)], n_out=2, opset=10, axis=0 - 1)


@pytest.mark.parametrize("op_type", ["ArgMax", "ArgMin"])
def test_argmax_select_last_index(op_type):
    x = RNG.integers(0, 3, size=(4, 5, 3)).astype(np.int32)
    check(op_type, [x], opset=13, axis=1, keepdims=0, select_last_index=1)
    check(op_type, [x], opset=13, axis=-1, keepdims=1, select_last_index=0)


def test_gather_family_random_against_ort():
    data = RNG.standard_normal((4, 5, 6)).astype(np.float32)
    check("Gather", [data, RNG.integers(-5, 5, size=(2, 3)).astype(np.int64)], opset=13, axis=1)
    check("Gather", [data, np.array(-1, np.int32)], opset=13, axis=2)
    check("GatherElements", [data, RNG.integers(-6, 6, size=(3, 2, 4)).astype(np.int64)], opset=13, axis=-1)
    idx = RNG.integers(0, 5, size=(4, 3, 1)).astype(np.int64)
    check("GatherND", [data, idx], opset=13, batch_dims=1)
    check("GatherND", [data, RNG.integers(-4, 4, size=(2, 2, 2)).astype(np.int64)], opset=13)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_reductions_against_ort(reduction):
    data = RNG.standard_normal((4, 5)).astype(np.float32)
    idx = RNG.integers(-4, 4, size=(3, 5)).astype(np.int64)
    if reduction == "none":  # duplicates are unspecified under 'none'
        idx = np.stack([RNG.permutation(4)[:3] for _ in range(5)], axis=1).astype(np.int64)
    upd = RNG.standard_normal((3, 5)).astype(np.float32)
    check("ScatterElements", [data, idx, upd], opset=18, axis=0, reduction=reduction)
    nd_idx = np.array([[1], [3], [1]] if reduction != "none" else [[1], [3], [0]], dtype=np.int64)
    check("ScatterND", [data, nd_idx, RNG.standard_normal((3, 5)).astype(np.float32)], opset=18,
          reduction=reduction)


def test_misc_against_ort():
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    check("ReverseSequence", [x, i64(5, 1, 0, 3)], batch_axis=0, time_axis=1)
    check("CumSum", [X3, np.array(1, np.int32)], exclusive=1, reverse=1)
    check("Trilu", [X3, i64(-1)], upper=0)
    check("Trilu", [X3, i64(2)], upper=1)
    check("OneHot", [np.array([[1, -2], [5, 0]], np.int64), np.array(4, np.int64),
                     np.array([0, 3], np.float32)], axis=0)
    check("Expand", [np.arange(3, dtype=np.int64).reshape(3, 1), i64(2, 1, 4)])
    check("Tile", [x, i64(2, 3)])
    check("DepthToSpace", [RNG.standard_normal((1, 8, 2, 3)).astype(np.float32)], blocksize=2, mode="CRD")
    check("Compress", [x, np.array([True, False, True], bool)], axis=1)
    check("Unique", [np.array([[3, 1], [3, 1], [0, 2]], np.int64)], n_out=4, axis=0, sorted=0)
    check("Range", [np.array(10, np.int64), np.array(-3, np.int64), np.array(-4, np.int64)])
    check("Range", [np.array(0.5, np.float32), np.array(3.0, np.float32), np.array(0.7, np.float32)])
    check("EyeLike", [np.zeros((3, 5), np.int32)], k=-1, dtype=TensorProto.DOUBLE)
    check("Shape", [X3], opset=15, start=-2, end=100)
    check("Flatten", [X3], axis=-3)
    check("Reshape", [np.zeros((0, 3), np.float32), i64(0, 3)], allowzero=1, opset=14)
    check("Reshape", [X3, i64(0, -1)], opset=14)
    check("Squeeze", [np.zeros((1, 3, 1), np.float32)], opset=11, axes=[-1])
    check("Unsqueeze", [X3], opset=11, axes=[-1, 0])
    check("NonZero", [np.array([[1, 0], [0, 3]], np.int32)], opset=13)
    check("NonZero", [np.array(2.0, np.float32)], opset=13)  # scalar: shape (1, nnz) like onnxruntime
    check("GatherND", [RNG.standard_normal((2, 3, 4, 5)).astype(np.float32),
                       RNG.integers(-4, 4, (2, 3, 2, 1)).astype(np.int64)], batch_dims=2)
    check("ScatterElements", [np.arange(12, dtype=np.int64).reshape(3, 4), i64(0, 0, 2, 1).reshape(1, 4),
                              i64(5, 6, 7, 8).reshape(1, 4)], axis=0, reduction="add")
    check("Expand", [X3, i64(4)])
    check("Tile", [X3, i64(0, 2, 1)])
    check("SpaceToDepth", [RNG.standard_normal((1, 2, 4, 6)).astype(np.float32)], blocksize=2)


def test_dropout_inference_and_mask():
    x = X3
    check("Dropout", [x], n_out=2, opset=13)
    # Before opset 12 onnxruntime returns an all-zero mask in inference; onnxrt returns ones (nothing
    # was dropped), like the onnx reference evaluator. Only the output is compared there.
    y, mask = _run_ours("Dropout", [x], n_out=2, opset=10, ratio=0.3)
    assert y is x or np.array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()
    check("Dropout", [x, np.array(0.3, np.float32), np.array(False)], n_out=2, opset=13)


def test_dropout_training_scales_kept_values():
    x = np.ones((50, 40), np.float32)
    y, mask = _run_ours("Dropout", [x, np.array(0.25, np.float32), np.array(True)], n_out=2, opset=13, seed=3)
    assert mask.dtype == np.bool_ and y.dtype == np.float32
    np.testing.assert_allclose(y[mask], 1 / 0.75, rtol=1e-6)
    assert not y[~mask].any()
    assert 0.6 < mask.mean() < 0.9


# -- strings, views ---------------------------------------------------------------------------


def test_string_tensors_in_data_movement_ops():
    (c,) = _run_ours("Concat", [STR, STR], axis=0)
    assert c.dtype == object and c.shape == (4, 3) and c[3, 2] == "f"
    (t,) = _run_ours("Transpose", [STR], perm=[1, 0])
    assert t[2, 1] == "f"
    (g,) = _run_ours("Gather", [STR, i64(-1, 0)], axis=1)
    assert g.tolist() == [["c", "a"], ["f", "d"]]
    (p,) = _run_ours("Pad", [STR, i64(0, 1, 0, 0)], opset=13)
    assert p.tolist() == [["", "a", "b", "c"], ["", "d", "e", "f"]]
    (s,) = _run_ours("Slice", [STR, i64(-1), i64(-100), i64(1), i64(-1)], opset=13)
    assert s.tolist() == [["c", "b", "a"], ["f", "e", "d"]]
    (r,) = _run_ours("Reshape", [STR, i64(3, 2)], opset=14)
    assert r.shape == (3, 2)
    (sc,) = _run_ours("ScatterND", [STR, i64(1, 1).reshape(1, 2), np.array(["z"], dtype=object)], opset=13)
    assert sc[1, 1] == "z" and STR[1, 1] == "e"
    a, b = _run_ours("Split", [STR], n_out=2, opset=18, axis=1, num_outputs=2)
    assert a.tolist() == [["a", "b"], ["d", "e"]] and b.tolist() == [["c"], ["f"]]


def test_reshape_family_returns_views():
    from onnxrt.ops import shape as k

    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    assert np.shares_memory(k.reshape(x, i64(4, -1)), x)
    assert np.shares_memory(k.flatten(x, axis=2), x)
    assert np.shares_memory(k.squeeze(x.reshape(1, 24)), x)
    assert np.shares_memory(k.unsqueeze(x, i64(0)), x)
    assert np.shares_memory(k.slice_(x, i64(1), i64(3), i64(2), None), x)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("op_type,inputs,attrs,opset,fragment", [
    ("Gather", [X3, i64(0, 3)], {"axis": 0}, 13, "index 3"),
    ("GatherElements", [X3, np.full((2, 3, 4), -5, np.int64)], {"axis": 2}, 13, "index -5"),
    ("GatherND", [X3, i64(1, 7).reshape(1, 2)], {}, 13, "index 7"),
    ("ScatterND", [X3, i64(2).reshape(1, 1), np.zeros((1, 3, 4), np.float32)], {}, 13, "index 2"),
    ("ScatterElements", [X3, np.full((1, 1, 1), 9, np.int64), np.zeros((1, 1, 1), np.float32)], {"axis": 1}, 13,
     "index 9"),
    ("Reshape", [X3, i64(5, -1)], {}, 14, "cannot be reshaped"),
    ("Squeeze", [X3, i64(1)], {}, 13, "cannot squeeze axis 1"),
    ("Transpose", [X3], {"perm": [1, 0]}, 13, "perm"),
    ("TopK", [X3, i64(9)], {}, 11, "k=9"),
    ("Split", [X3, i64(1, 1)], {"axis": 1}, 13, "sum to"),
    ("Concat", [X3, np.zeros((2, 2, 5), np.float32)], {"axis": 1}, 13, "incompatible"),
    ("Slice", [X3, i64(0), i64(1), i64(5)], {}, 13, "axes entry 5"),
])
def test_errors_name_the_problem(op_type, inputs, attrs, opset, fragment):
    n_out = 2 if op_type in ("TopK", "Split") else 1
    with pytest.raises(OrtError) as info:
        _run_ours(op_type, inputs, n_out=n_out, opset=opset, **attrs)
    msg = str(info.value)
    assert op_type in msg and fragment in msg
    assert "IndexError" not in msg


def test_scalar_gather_keeps_string_and_exotic_dtypes():
    from onnxrt.ops.registry import KernelContext, lookup

    import ml_dtypes

    since, factory = lookup("", "Gather", 13)
    run = factory(KernelContext("Gather", "", "", 13, since, {"axis": 0}, 2, 1))
    s = run(np.array(["ab", "c"], dtype=object), np.array(-1, np.int64))
    assert s.dtype == object and s.shape == () and s.item() == "c"
    b = run(np.array([1.5, 2.5], dtype=ml_dtypes.bfloat16), np.array(0, np.int32))
    assert b.dtype == ml_dtypes.bfloat16 and b.shape == ()


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_small_k_partition_path_matches_ort(largest):
    x = RNG.integers(0, 6, size=(3, 300, 2)).astype(np.float32)  # many ties at the k-th value
    check("TopK", [x, i64(7)], n_out=2, opset=11, axis=1, largest=largest)
    xi = RNG.integers(0, 1000, size=(4, 500)).astype(np.int64)
    check("TopK", [xi, i64(20)], n_out=2, opset=11, largest=largest)
