"""com.microsoft Tokenizer against onnxruntime: separators, tokenexp, character mode, mark,
mincharnum, padding, rank-2 inputs, empty inputs and attribute errors."""

from __future__ import annotations

import random

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

import onnxrt
import onnxrt.errors


def _model(**attrs):
    attrs.setdefault("mark", 0)
    attrs.setdefault("pad_value", "#")
    attrs.setdefault("mincharnum", 1)
    node = helper.make_node("Tokenizer", ["X"], ["Y"], domain="com.microsoft", **attrs)
    graph = helper.make_graph([node], "tok", [helper.make_tensor_value_info("X", TensorProto.STRING, None)],
                              [helper.make_tensor_value_info("Y", TensorProto.STRING, None)])
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17),
                                                                  helper.make_opsetid("com.microsoft", 1)])
    return model.SerializeToString()


def _ours(model: bytes):
    return onnxrt.InferenceSession(model, providers=["CPUExecutionProvider"])


def _ref(model: bytes):
    return onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])


def _check(x, **attrs) -> np.ndarray:
    model = _model(**attrs)
    x = np.array(x, dtype=object)
    expected = _ref(model).run(None, {"X": x})[0]
    got = _ours(model).run(None, {"X": x})[0]
    assert got.dtype == object
    assert got.shape == expected.shape, (x.tolist(), attrs, got.tolist(), expected.tolist())
    assert got.tolist() == expected.tolist(), (x.tolist(), attrs)
    return got


TEXTS = ["Hello World", "I love computer science !", "", "  spaced   out  ", "a,b;c.d?e", "héllo wörld ça",
         "line\nbreak\ttab", "x", "aaa b aa", "abcabc bcd"]

CASES = [
    dict(separators=[" "]),
    dict(separators=[" "], mark=1),
    dict(separators=[" ", ",", ";", "[.]", "\\?"]),
    dict(separators=[" "], mincharnum=3, pad_value="PAD"),
    dict(separators=["b", "bc"]),
    dict(separators=["bc", "b"]),
    dict(separators=["b|bc"]),  # leftmost-longest
    dict(separators=["\\s+"], mark=1),
    dict(separators=["x*"]),  # empty matches end the segment
    dict(separators=[" ", "a?"]),
    dict(separators=["-|$"]),
    dict(separators=["^a"]),
    dict(separators=[""]),
    dict(separators=[""], mark=1),
    dict(tokenexp="."),
    dict(tokenexp=".", mark=1, pad_value=""),
    dict(tokenexp="[a-zA-Z0-9_]+"),
    dict(tokenexp="[a-zA-Z0-9_]+", mark=1, mincharnum=2),
    dict(tokenexp="\\w+"),  # ASCII \w, like RE2
    dict(tokenexp="[[:alpha:]]+"),
    dict(tokenexp="\\b\\w\\w+\\b"),
    dict(tokenexp="a*"),
    dict(tokenexp="b|bcd|bc"),  # leftmost-longest
    dict(tokenexp="(a|ab)(c|bcd)?"),
    dict(tokenexp="^.at|b."),
    dict(tokenexp="[^ ]+", mincharnum=3),
    dict(tokenexp=".+"),
    dict(tokenexp="(?i)HEL+O|w\\S*"),
    dict(tokenexp="x*"),
    dict(separators=[" "], tokenexp="o"),  # both set: separators win
]


@pytest.mark.parametrize("attrs", CASES, ids=lambda a: ",".join(f"{k}={v!r}" for k, v in a.items()))
def test_tokenizer_matches_onnxruntime(attrs):
    _check(TEXTS, **attrs)
    _check(np.array(TEXTS[:8], dtype=object).reshape(2, 4), **attrs)
    _check(["cat bat", "abcd", "hello"], **attrs)


def test_doc_example_and_marks():
    got = _check(["Hello World", "I love computer science !"], separators=[" "])
    assert got.tolist() == [["Hello", "World", "#", "#", "#"], ["I", "love", "computer", "science", "!"]]
    got = _check(["", "a b"], separators=[" "], mark=1)
    assert got.tolist() == [["\x02", "\x03", "#", "#"], ["\x02", "a", "b", "\x03"]]


@pytest.mark.parametrize("x", [[""], ["", "  "], [[""], [" "]], np.zeros((0,), object), np.zeros((2, 0), object),
                               np.zeros((0, 3), object)], ids=["one-empty", "blank", "blank-2d", "0", "2x0", "0x3"])
@pytest.mark.parametrize("mark", [0, 1])
def test_empty_results(x, mark):
    _check(x, separators=[" "], mark=mark)
    _check(x, tokenexp="[a-z]+", mark=mark)


def test_random_strings_match_onnxruntime():
    rng = random.Random(0)
    alphabet = "ab c,d.é\n  xyZ_9"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 25))) for _ in range(60)]
    x = np.array(texts, dtype=object).reshape(6, 10)
    for attrs in (dict(separators=[" ", ",", "[.]"]), dict(separators=["\\s+", "d"], mark=1, mincharnum=2),
                  dict(tokenexp="[a-z]+|[0-9]"), dict(tokenexp="\\S+", mark=1), dict(separators=[""]),
                  dict(tokenexp="[^ ,]{2,}")):
        _check(x, **attrs)


def test_tokenexpsplit():
    # Not in onnxruntime's schema: tokenexp is used as a separator.
    model = _model(tokenexp="[a-c]+", tokenexpsplit=1)
    got = _ours(model).run(None, {"X": np.array(["abc ef zoo", "abc,d", "ab/e", "xyz"], dtype=object)})[0]
    assert got.tolist() == [[" ef zoo"], [",d"], ["/e"], ["xyz"]]


@pytest.mark.parametrize("attrs, message", [
    (dict(separators=[""], mincharnum=2), "mincharnum"),
    (dict(separators=[" "], mincharnum=0), "mincharnum"),
    (dict(tokenexp="("), "tokenexp"),
    (dict(separators=["[ "]), "separator"),
    (dict(tokenexp=""), "tokenexp"),
    (dict(), "separators"),
])
def test_bad_attributes_fail_at_load(attrs, message):
    model = _model(**attrs)
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.Fail):
        _ref(model)
    with pytest.raises(onnxrt.errors.Fail, match=message):
        _ours(model)


def test_rank_3_input_refused():
    model = _model(separators=[" "])
    x = np.array([[["a b"]]], dtype=object)
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument):
        _ref(model).run(None, {"X": x})
    with pytest.raises(onnxrt.errors.InvalidArgument, match="dimensions"):
        _ours(model).run(None, {"X": x})
