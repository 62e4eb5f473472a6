"""Text kernels: behaviour the ONNX node suite does not cover, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import onnxrt

S, F, I = TensorProto.STRING, TensorProto.FLOAT, TensorProto.INT64


def _model(op_type, in_type, out_types, opset=20, **attrs):
    outs = [f"Y{i}" for i in range(len(out_types))]
    node = helper.make_node(op_type, ["X"], outs, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", in_type, None)],
                              [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, out_types)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 9
    return m.SerializeToString()


def _both(model, X):
    ours = onnxrt.InferenceSession(model).run(None, {"X": X})
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"X": X})
    return ours, ref


@pytest.mark.parametrize("mode", ["TF", "IDF", "TFIDF"])
def test_tfidf_strings_weights_and_unigrams_match_ort(mode):
    pool = ["a", "b", "c", "a", "b", "b", "c", "c", "a"]  # 3 unigrams, 3 bigrams
    model = _model("TfIdfVectorizer", S, [F], opset=9, mode=mode, min_gram_length=1, max_gram_length=2,
                   max_skip_count=2, ngram_counts=[0, 3], ngram_indexes=[5, 1, 0, 2, 3, 4], pool_strings=pool,
                   weights=[0.5, 2.0, 1.5, 3.0, 0.25, 4.0])
    X = np.array([["a", "b", "c", "a", "x", "b"], ["c", "c", "a", "b", "b", "z"]], dtype=object)
    ours, ref = _both(model, X)
    assert ours[0].dtype == np.float32 and ours[0].shape == ref[0].shape
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-6)


def test_string_normalizer_case_insensitive_stopwords():
    model = _model("StringNormalizer", S, [S], opset=10, case_change_action="LOWER", is_case_sensitive=0,
                   stopwords=["The", "a"])
    X = np.array([["the", "Quick", "A", "BROWN", "THE"]], dtype=object)
    (y,) = onnxrt.InferenceSession(model).run(None, {"X": X})  # onnxruntime needs the en_US locale installed
    assert y.shape == (1, 2) and y.tolist() == [["quick", "brown"]]
    (y,) = onnxrt.InferenceSession(model).run(None, {"X": np.array(["THE", "a"], dtype=object)})
    assert y.shape == (1,) and y.tolist() == [""]


def test_string_split_delimiter_maxsplit_and_shape():
    model = _model("StringSplit", S, [S, I], delimiter="::", maxsplit=1)
    X = np.array([["a::b::c", ""], ["::x", "y"]], dtype=object)
    subs, counts = onnxrt.InferenceSession(model).run(None, {"X": X})
    assert subs.shape == (2, 2, 2)
    assert subs.tolist() == [[["a", "b::c"], ["", ""]], [["", "x"], ["y", ""]]]
    assert counts.tolist() == [[2, 1], [2, 1]]


def test_regex_full_match_re2_syntax_and_bad_pattern():
    model = _model("RegexFullMatch", S, [TensorProto.BOOL], pattern=r"\Qa.b\E\d+\z")
    (y,) = onnxrt.InferenceSession(model).run(None, {"X": np.array(["a.b12", "axb12", "a.b1x"], dtype=object)})
    assert y.tolist() == [True, False, False]
    with pytest.raises(Exception, match="RegexFullMatch"):
        onnxrt.InferenceSession(_model("RegexFullMatch", S, [TensorProto.BOOL], pattern="(unclosed"))


def test_string_concat_broadcast_and_type_error():
    node = helper.make_node("StringConcat", ["X", "Z"], ["Y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", S, None),
                                            helper.make_tensor_value_info("Z", S, None)],
                              [helper.make_tensor_value_info("Y", S, None)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    sess = onnxrt.InferenceSession(m.SerializeToString())
    (y,) = sess.run(None, {"X": np.array([["a"], ["b"]], dtype=object), "Z": np.array(["1", "2"], dtype=object)})
    assert y.tolist() == [["a1", "a2"], ["b1", "b2"]]
