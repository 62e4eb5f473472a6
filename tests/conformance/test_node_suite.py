"""The ONNX backend node suite, generated from the installed onnx package, run on onnxrt.

Every case is compared with exact dtypes and shapes. Cases listed in
``known_failures.py`` are strict xfails: if one starts passing, the test fails
until it is taken off the list, so the list stays true.
"""

from __future__ import annotations

import warnings

import onnx
import pytest

import onnxrt
from tests.conformance.compare import assert_same
from tests.conformance.known_failures import (
    NODE_CASE_COUNT,
    NODE_KNOWN_FAILURES,
    NODE_RANDOM_OUTPUT,
    PINNED_ONNX_VERSION,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from onnx.backend.test.case.node import collect_testcases

    _CASES = {case.name: case for case in collect_testcases()}


def _params():
    for name in sorted(_CASES):
        reason = NODE_KNOWN_FAILURES.get(name)
        if reason is None:
            yield pytest.param(name, id=name)
        else:
            yield pytest.param(name, id=name, marks=pytest.mark.xfail(reason=reason, strict=name not in NODE_RANDOM_OUTPUT))


def _value(v):
    """Case data as runtime values: some generators store TensorProto/SequenceProto/OptionalProto."""
    from onnx import numpy_helper

    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, onnx.SequenceProto):
        return numpy_helper.to_list(v)
    if isinstance(v, onnx.MapProto):
        return numpy_helper.to_dict(v)
    if isinstance(v, onnx.OptionalProto):
        return numpy_helper.to_optional(v)
    return v


def run_case(case) -> None:
    session = onnxrt.InferenceSession(case.model.SerializeToString())
    input_names = [i.name for i in session.get_inputs()]
    for inputs, expected in case.data_sets:
        feed = dict(zip(input_names, [_value(v) for v in inputs]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            outputs = session.run(None, feed)
        assert len(outputs) == len(expected), f"{len(outputs)} outputs, expected {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, outputs)):
            assert_same(_value(e), a, case.rtol, case.atol, f"output {i} ({session.get_outputs()[i].name})")


@pytest.mark.parametrize("name", list(_params()))
def test_node_case(name: str) -> None:
    run_case(_CASES[name])


def test_suite_is_the_pinned_one() -> None:
    """The suite silently shrinks when onnx changes: pin the version and the case count."""
    assert onnx.__version__ == PINNED_ONNX_VERSION
    assert len(_CASES) == NODE_CASE_COUNT


def test_known_failures_are_real_cases() -> None:
    unknown = sorted(set(NODE_KNOWN_FAILURES) - set(_CASES))
    assert not unknown, f"known_failures.py names cases the suite does not have: {unknown}"
