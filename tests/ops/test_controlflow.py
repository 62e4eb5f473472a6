"""Control flow, sequences, optionals and random ops: behaviour the ONNX node suite does not cover."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper as h

import onnxrt

F = TP.FLOAT


def _model(nodes, inputs, outputs, opset=17, initializers=()):
    g = h.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)], ir_version=8)


def _vi(name, elem=F, shape=None):
    return h.make_tensor_value_info(name, elem, shape)


def _run(model, feeds):
    return onnxrt.InferenceSession(model.SerializeToString()).run(None, feeds)


def _compare_with_ort(model, feeds):
    ours = _run(model, feeds)
    theirs = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert isinstance(a, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    return ours


# -- If / Loop ---------------------------------------------------------------------------------


def _nested_model():
    """If whose then-branch holds a Loop whose body reads X and Y from the main graph (two levels up)."""
    loop_body = h.make_graph(
        [
            h.make_node("Add", ["acc", "X"], ["acc_out"]),
            h.make_node("Identity", ["c"], ["c_out"]),
            h.make_node("Mul", ["acc_out", "Y"], ["scan_out"]),
        ],
        "loop_body",
        [_vi("i", TP.INT64, []), _vi("c", TP.BOOL, []), _vi("acc", F, [2])],
        [_vi("c_out", TP.BOOL, []), _vi("acc_out", F, [2]), _vi("scan_out", F, [2])],
    )
    then_g = h.make_graph(
        [h.make_node("Loop", ["M", "", "Z"], ["r", "s"], body=loop_body)], "then", [], [_vi("r", F, [2]), _vi("s", F)]
    )
    else_g = h.make_graph(
        [h.make_node("Identity", ["Y"], ["ey"]), h.make_node("Identity", ["X"], ["ex"])],
        "else",
        [],
        [_vi("ex", F, [2]), _vi("ey", F)],
    )
    return _model(
        [h.make_node("If", ["cond"], ["o1", "o2"], then_branch=then_g, else_branch=else_g)],
        [_vi("cond", TP.BOOL, []), _vi("M", TP.INT64, []), _vi("X", F, [2]), _vi("Y", F, [2]), _vi("Z", F, [2])],
        [_vi("o1", F, [2]), _vi("o2", F)],
    )


@pytest.mark.parametrize("cond,trips", [(True, 3), (True, 0), (False, 2)])
def test_nested_if_loop_reads_outer_values(cond, trips):
    feeds = dict(
        cond=np.array(cond),
        M=np.array(trips, np.int64),
        X=np.array([1, 2], np.float32),
        Y=np.array([3, 4], np.float32),
        Z=np.array([0.5, 0.5], np.float32),
    )
    out = _compare_with_ort(_nested_model(), feeds)
    if cond and trips == 0:
        assert out[1].shape == (0, 2) and out[1].dtype == np.float32  # empty scan output keeps its type


def _while_model():
    """Loop with only a condition (a while loop): doubles x until its sum exceeds the limit."""
    body = h.make_graph(
        [
            h.make_node("Add", ["x", "x"], ["x2"]),
            h.make_node("ReduceSum", ["x2"], ["s"], keepdims=0),
            h.make_node("Less", ["s", "limit"], ["c_out"]),
            h.make_node("Identity", ["i"], ["i_out"]),
        ],
        "body",
        [_vi("i", TP.INT64, []), _vi("c", TP.BOOL, []), _vi("x", F, [3])],
        [_vi("c_out", TP.BOOL, []), _vi("x2", F, [3]), _vi("i_out", TP.INT64, [])],
    )
    return _model(
        [h.make_node("Loop", ["", "c0", "x0"], ["xf", "iters"], body=body)],
        [_vi("c0", TP.BOOL, []), _vi("x0", F, [3]), _vi("limit", F, [])],
        [_vi("xf", F, [3]), _vi("iters", TP.INT64, None)],
    )


def test_loop_while_condition_only():
    x0 = np.array([1, 2, 3], np.float32)
    xf, iters = _compare_with_ort(_while_model(), dict(c0=np.array(True), x0=x0, limit=np.array(100, np.float32)))
    np.testing.assert_array_equal(iters, np.arange(len(iters)))
    # a false initial condition runs no iteration
    xf, iters = _run(_while_model(), dict(c0=np.array(False), x0=x0, limit=np.array(100, np.float32)))
    np.testing.assert_array_equal(xf, x0)
    assert iters.shape == (0,) and iters.dtype == np.int64


def test_loop_trip_count_stops_on_body_condition_like_onnxruntime():
    # The spec says the body's condition is ignored when the 'cond' input is omitted; onnxruntime
    # (and onnx's reference evaluator) stop as soon as the body yields false: we follow them.
    body = h.make_graph(
        [h.make_node("Constant", [], ["c_out"], value=h.make_tensor("f", TP.BOOL, [], [False])),
         h.make_node("Add", ["x", "one"], ["x1"])],
        "body",
        [_vi("i", TP.INT64, []), _vi("c", TP.BOOL, []), _vi("x", F, [])],
        [_vi("c_out", TP.BOOL, []), _vi("x1", F, [])],
    )
    model = _model(
        [h.make_node("Loop", ["M", "", "x0"], ["xf"], body=body)],
        [_vi("M", TP.INT64, []), _vi("x0", F, [])],
        [_vi("xf", F, [])],
        initializers=[onnx.numpy_helper.from_array(np.array(1, np.float32), "one")],
    )
    (xf,) = _compare_with_ort(model, dict(M=np.array(4, np.int64), x0=np.array(0, np.float32)))
    assert float(xf) == 1.0


def test_if_bad_condition_names_op():
    model = _nested_model()
    model.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(Exception, match="If.*cond"):
        _run(model, dict(cond=np.array([True, False]), M=np.array(1, np.int64), X=np.zeros(2, np.float32),
                         Y=np.zeros(2, np.float32), Z=np.zeros(2, np.float32)))


# -- Scan --------------------------------------------------------------------------------------


def _scan9_model(in_axes, in_dirs, out_axes, out_dirs):
    body = h.make_graph(
        [h.make_node("Add", ["s", "a"], ["s_out"]), h.make_node("Mul", ["s_out", "b"], ["y"]),
         h.make_node("Identity", ["s_out"], ["y2"])],
        "body",
        [_vi("s", F, [2]), _vi("a", F, [2]), _vi("b", F, [2])],
        [_vi("s_out", F, [2]), _vi("y", F, [2]), _vi("y2", F, [2])],
    )
    node = h.make_node(
        "Scan", ["s0", "A", "B"], ["sf", "Y", "Y2"], body=body, num_scan_inputs=2, scan_input_axes=in_axes,
        scan_input_directions=in_dirs, scan_output_axes=out_axes, scan_output_directions=out_dirs,
    )
    return _model([node], [_vi("s0", F, [2]), _vi("A", F, None), _vi("B", F, None)],
                  [_vi("sf", F, None), _vi("Y", F, None), _vi("Y2", F, None)], opset=16)


@pytest.mark.parametrize(
    "in_axes,in_dirs,out_axes,out_dirs",
    [([0, 0], [0, 0], [0, 0], [0, 0]), ([1, -1], [1, 0], [1, -2], [0, 1]), ([0, 1], [0, 1], [-1, 0], [1, 1])],
)
def test_scan9_axes_and_directions(in_axes, in_dirs, out_axes, out_dirs):
    rng = np.random.default_rng(0)
    T = 4
    A = rng.standard_normal((T, 2) if in_axes[0] == 0 else (2, T)).astype(np.float32)
    B = rng.standard_normal((T, 2) if in_axes[1] == 0 else (2, T)).astype(np.float32)
    _compare_with_ort(_scan9_model(in_axes, in_dirs, out_axes, out_dirs),
                      dict(s0=np.zeros(2, np.float32), A=A, B=B))


def test_scan9_mismatched_lengths():
    A = np.zeros((3, 2), np.float32)
    B = np.zeros((4, 2), np.float32)
    with pytest.raises(Exception, match="Scan.*sequence length"):
        _run(_scan9_model([0, 0], [0, 0], [0, 0], [0, 0]), dict(s0=np.zeros(2, np.float32), A=A, B=B))


def test_scan8_sequence_lens_and_direction():
    body = h.make_graph(
        [h.make_node("Add", ["s", "a"], ["s_out"]), h.make_node("Identity", ["s_out"], ["y"])],
        "body",
        [_vi("s", F, [2]), _vi("a", F, [2])],
        [_vi("s_out", F, [2]), _vi("y", F, [2])],
    )
    node = h.make_node("Scan", ["lens", "s0", "A"], ["sf", "Y"], body=body, num_scan_inputs=1, directions=[1])
    model = _model([node], [_vi("lens", TP.INT64, [3]), _vi("s0", F, [3, 2]), _vi("A", F, [3, 4, 2])],
                   [_vi("sf", F, None), _vi("Y", F, None)], opset=8)
    A = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    s0 = np.ones((3, 2), np.float32)
    sf, Y = _compare_with_ort(model, dict(lens=np.array([4, 2, 1], np.int64), s0=s0, A=A))
    np.testing.assert_allclose(sf[1], 1 + A[1, :2].sum(0))
    np.testing.assert_allclose(Y[1, :2], 1 + np.cumsum(A[1, :2][::-1], axis=0))
    np.testing.assert_array_equal(Y[1, 2:], 0)  # padding past the sequence length
    with pytest.raises(Exception, match="Scan.*sequence_lens"):
        _run(model, dict(lens=np.array([4, 5, 1], np.int64), s0=s0, A=A))


# -- sequences and optionals -------------------------------------------------------------------


def _seq_model(nodes, inputs, outputs, opset=17):
    return _model(nodes, inputs, outputs, opset)


def test_sequence_ops_chain_against_ort():
    nodes = [
        h.make_node("SequenceConstruct", ["a", "b", "c"], ["s"]),
        h.make_node("SequenceErase", ["s", "neg1"], ["s2"]),
        h.make_node("SequenceInsert", ["s2", "c", "zero"], ["s3"]),
        h.make_node("SequenceLength", ["s3"], ["n"]),
        h.make_node("SequenceAt", ["s3", "neg1"], ["last"]),
        h.make_node("ConcatFromSequence", ["s3"], ["cat"], axis=-1),
        h.make_node("ConcatFromSequence", ["s3"], ["stk"], axis=-1, new_axis=1),
        h.make_node("SplitToSequence", ["cat", "two"], ["parts"], axis=1),
        h.make_node("ConcatFromSequence", ["parts"], ["back"], axis=1),
    ]
    model = _model(
        nodes,
        [_vi("a", F, [2, 3]), _vi("b", F, [2, 3]), _vi("c", F, [2, 3])],
        [_vi("n", TP.INT64, []), _vi("last", F, None), _vi("cat", F, None), _vi("stk", F, None), _vi("back", F, None)],
        initializers=[
            onnx.numpy_helper.from_array(np.array(-1, np.int64), "neg1"),
            onnx.numpy_helper.from_array(np.array(0, np.int32), "zero"),
            onnx.numpy_helper.from_array(np.array(2, np.int64), "two"),
        ],
    )
    rng = np.random.default_rng(1)
    feeds = {k: rng.standard_normal((2, 3)).astype(np.float32) for k in "abc"}
    _compare_with_ort(model, feeds)


def test_sequence_at_out_of_range_and_empty_optional():
    model = _model(
        [h.make_node("SequenceConstruct", ["a"], ["s"]), h.make_node("SequenceAt", ["s", "p"], ["y"])],
        [_vi("a", F, [2]), _vi("p", TP.INT64, [])],
        [_vi("y", F, None)],
    )
    with pytest.raises(Exception, match="SequenceAt.*position 3 is out of range"):
        _run(model, dict(a=np.zeros(2, np.float32), p=np.array(3, np.int64)))
    model = _model(
        [h.make_node("Optional", [], ["o"], type=h.make_tensor_type_proto(F, [2])),
         h.make_node("OptionalGetElement", ["o"], ["y"])],
        [],
        [_vi("y", F, None)],
        opset=18,
    )
    with pytest.raises(Exception, match="OptionalGetElement.*empty"):
        _run(model, {})


def test_split_to_sequence_scalar_split_uneven():
    model = _model([h.make_node("SplitToSequence", ["x", "k"], ["s"], axis=0),
                    h.make_node("SequenceLength", ["s"], ["n"]),
                    h.make_node("SequenceAt", ["s", "last"], ["tail"])],
                   [_vi("x", F, [7, 2]), _vi("k", TP.INT64, []), _vi("last", TP.INT64, [])],
                   [_vi("n", TP.INT64, []), _vi("tail", F, None)])
    feeds = dict(x=np.arange(14, dtype=np.float32).reshape(7, 2), k=np.array(3, np.int64),
                 last=np.array(-1, np.int64))
    n, tail = _compare_with_ort(model, feeds)
    assert int(n) == 3 and tail.shape == (1, 2)


def test_sequence_map_with_captured_value():
    body = h.make_graph([h.make_node("Add", ["e", "bias"], ["o"])], "body", [_vi("e", F, None)], [_vi("o", F, None)])
    model = _model(
        [h.make_node("SequenceConstruct", ["a", "b"], ["s"]),
         h.make_node("SequenceMap", ["s"], ["r"], body=body),
         h.make_node("ConcatFromSequence", ["r"], ["y"], axis=0, new_axis=1)],
        [_vi("a", F, [3]), _vi("b", F, [3]), _vi("bias", F, [3])],
        [_vi("y", F, None)],
    )
    a, b, bias = (np.full(3, v, np.float32) for v in (1, 2, 10))
    (y,) = _run(model, dict(a=a, b=b, bias=bias))
    np.testing.assert_array_equal(y, np.stack([a + bias, b + bias]))


# -- random ------------------------------------------------------------------------------------


def test_random_ops_shapes_dtypes_and_seed():
    nodes = [
        h.make_node("RandomUniform", [], ["u"], shape=[3, 4], dtype=TP.DOUBLE, low=2.0, high=3.0, seed=1.0),
        h.make_node("RandomNormal", [], ["n"], shape=[5], dtype=TP.FLOAT16),
        h.make_node("RandomUniformLike", ["x"], ["ul"]),
        h.make_node("RandomNormalLike", ["x"], ["nl"], dtype=TP.DOUBLE),
        h.make_node("Multinomial", ["logits"], ["m"], sample_size=50, dtype=TP.INT64),
        h.make_node("Bernoulli", ["p"], ["b"], dtype=TP.INT32),
    ]
    model = _model(nodes, [_vi("x", F, [2, 2]), _vi("logits", F, [2, 3]), _vi("p", F, [4])],
                   [_vi("u", TP.DOUBLE, None), _vi("n", TP.FLOAT16, None), _vi("ul", F, None),
                    _vi("nl", TP.DOUBLE, None), _vi("m", TP.INT64, None), _vi("b", TP.INT32, None)])
    logits = np.log(np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], np.float32) + 1e-30).astype(np.float32)
    feeds = dict(x=np.zeros((2, 2), np.float32), logits=logits, p=np.array([0, 1, 0, 1], np.float32))
    sess = onnxrt.InferenceSession(model.SerializeToString())
    u, n, ul, nl, m, b = sess.run(None, feeds)
    assert u.dtype == np.float64 and u.shape == (3, 4) and ((u >= 2) & (u < 3)).all()
    assert n.dtype == np.float16 and n.shape == (5,)
    assert ul.dtype == np.float32 and ul.shape == (2, 2)
    assert nl.dtype == np.float64 and nl.shape == (2, 2)
    assert m.dtype == np.int64 and m.shape == (2, 50)
    assert (m[0] == 1).all() and set(np.unique(m[1])) <= {0, 2}
    np.testing.assert_array_equal(b, [0, 1, 0, 1])
    assert b.dtype == np.int32
    # a seeded node is reproducible across sessions
    u2 = onnxrt.InferenceSession(model.SerializeToString()).run(["u"], feeds)[0]
    np.testing.assert_array_equal(u, u2)
