"""Map-typed outputs (skl2onnx ZipMap): NodeArgs, lists of dicts, and saving them, as onnxruntime does."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

import onnxrt

sklearn = pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402


@pytest.mark.parametrize(
    "estimator",
    [RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0), LogisticRegression(max_iter=500)],
    ids=["random_forest", "logistic_regression"],
)
def test_classifier_with_zipmap_matches_onnxruntime(estimator):
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    estimator.fit(X, y)
    data = skl2onnx.to_onnx(estimator, X[:1]).SerializeToString()
    ours = onnxrt.InferenceSession(data)
    theirs = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [(o.name, o.type, o.shape) for o in ours.get_outputs()] == [
        (o.name, o.type, o.shape) for o in theirs.get_outputs()
    ]
    labels, probabilities = ours.run(None, {"X": X})
    ref_labels, ref_probabilities = theirs.run(None, {"X": X})
    np.testing.assert_array_equal(labels, ref_labels)
    assert isinstance(probabilities, list) and isinstance(probabilities[0], dict)
    assert len(probabilities) == len(ref_probabilities)
    for row, ref_row in zip(probabilities, ref_probabilities):
        assert row.keys() == ref_row.keys()
        np.testing.assert_allclose([row[k] for k in row], [ref_row[k] for k in row], rtol=1e-5, atol=1e-6)


def test_optimized_model_with_zipmap_output_passes_the_checker(tmp_path):
    import onnx

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    estimator = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y)
    data = skl2onnx.to_onnx(estimator, X[:1]).SerializeToString()
    options = onnxrt.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    onnxrt.InferenceSession(data, options)
    onnx.checker.check_model(onnx.load(options.optimized_model_filepath), full_check=True)
    theirs = onnxruntime.InferenceSession(options.optimized_model_filepath, providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(theirs.run(None, {"X": X})[0], onnxrt.InferenceSession(data).run(None, {"X": X})[0])
