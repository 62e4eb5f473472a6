"""onnx's own backend test runner driving onnxrt over the model suites shipped with onnx.

Suites: ``light`` (the 'real' kind: ResNet-50, VGG-19, DenseNet-121, ... with constant weights),
``simple``, ``pytorch-converted`` and ``pytorch-operator`` from ``onnx/backend/test/data``. Known
failures live in ``known_failures.MODEL_KNOWN_FAILURES`` (strict xfails, like the node suite).
"""

from __future__ import annotations

import unittest
import warnings

import onnx.backend.test
from onnx.backend.test.loader import load_model_tests

import onnxrt.backend
from tests.conformance.known_failures import MODEL_KNOWN_FAILURES

SUITES = ("real", "simple", "pytorch-converted", "pytorch-operator")
MODEL_NAMES = sorted({t.name for kind in SUITES for t in load_model_tests(kind=kind)})
MODEL_COUNT = 149  # 9 light + 23 simple + 82 pytorch-converted + 35 pytorch-operator in onnx 1.23.2

_runner = onnx.backend.test.BackendTest(onnxrt.backend, __name__)
_runner.include("^(" + "|".join(f"{name}_cpu" for name in MODEL_NAMES) + ")$")
for _name in MODEL_KNOWN_FAILURES:
    _runner.xfail(f"^{_name}_cpu$")



def _model_test_classes() -> dict[str, type]:
    """The runner's generated classes, keeping only the model-suite tests.

    The runner also generates the node cases (run by test_node_suite with stricter dtype checks) as
    skipped tests; they are dropped instead of being reported as thousands of skips.
    """
    wanted = {f"{name}_cpu" for name in MODEL_NAMES}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = _runner.test_cases
    kept = {}
    for case_name, case in cases.items():
        for attr in [a for a in vars(case) if a.startswith("test_") and a not in wanted]:
            delattr(case, attr)
        if any(a.startswith("test_") for a in vars(case)):
            kept[case_name] = case
    return kept


globals().update(_model_test_classes())


class TestSuiteSize(unittest.TestCase):
    def test_model_suites_are_complete(self) -> None:
        self.assertEqual(len(MODEL_NAMES), MODEL_COUNT)

    def test_known_failures_name_real_models(self) -> None:
        self.assertFalse(set(MODEL_KNOWN_FAILURES) - set(MODEL_NAMES))
