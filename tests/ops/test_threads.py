"""runtime/threads.py: BLAS limits restored, intra-op splitting gives the same results as one thread."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import onnxrt
from onnxrt.runtime import threads

RNG = np.random.default_rng(7)


def _conv_model(c: int, hw: int, group: int, stride: int) -> bytes:
    w = RNG.standard_normal((c, c // group, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(c).astype(np.float32)
    node = helper.make_node("Conv", ["X", "W", "B"], ["Y"], pads=[1, 1, 1, 1], group=group, strides=[stride] * 2)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", 1, [1, c, hw, hw])],
                              [helper.make_tensor_value_info("Y", 1, None)],
                              [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


@pytest.mark.parametrize("c,hw,group,stride", [(64, 40, 1, 1), (96, 40, 96, 1), (96, 40, 96, 2), (32, 33, 2, 1)])
def test_conv_split_over_threads_matches_one_thread(c, hw, group, stride):
    sess = onnxrt.InferenceSession(_conv_model(c, hw, group, stride))
    x = RNG.standard_normal((1, c, hw, hw)).astype(np.float32)
    with threads.intra_op_threads(1):
        one = sess.run(None, {"X": x})[0]
    with threads.intra_op_threads(2):
        two = sess.run(None, {"X": x})[0]
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-5)


def test_erf_and_gelu_blocks_over_threads():
    from onnxrt.ops.elementwise import erf_array

    x = RNG.standard_normal(300_001).astype(np.float32) * 3
    with threads.intra_op_threads(1):
        one = erf_array(x)
    with threads.intra_op_threads(2):
        two = erf_array(x)
    np.testing.assert_array_equal(one, two)


def test_parallel_for_covers_every_index_once():
    seen = np.zeros(1001, np.int64)

    def mark(sl: slice) -> None:
        seen[sl] += 1

    with threads.intra_op_threads(2):
        threads.parallel_for(mark, seen.size)
    np.testing.assert_array_equal(seen, 1)


def test_run_scope_restores_blas_threads():
    before = threads.blas_num_threads()
    with threads.run_scope(0, blas=1) as n:
        assert n == threads.available_cores()
        assert all(v == 1 for v in threads.blas_num_threads())
        assert threads.current_num_threads() == n
    assert threads.blas_num_threads() == before
    assert threads.current_num_threads() == 1


def test_bad_thread_counts_are_refused():
    with pytest.raises(ValueError, match="intra_op_num_threads"):
        threads.resolve_num_threads(-1)
    with pytest.raises(ValueError, match="BLAS thread count"):
        with threads.blas_threads(0):
            pass
