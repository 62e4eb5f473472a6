"""Session construction leaves the process as it found it."""

from __future__ import annotations

import gc

import pytest

import onnxrt
from tests.api import models


@pytest.mark.parametrize("enabled", [True, False])
def test_cyclic_gc_state_is_restored(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        onnxrt.InferenceSession(models.add_model().SerializeToString())
        assert gc.isenabled() is enabled
        with pytest.raises(onnxrt.NotImplemented):
            onnxrt.InferenceSession(models.unknown_op_model().SerializeToString())
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_cyclic_gc_is_off_only_while_a_session_is_built(monkeypatch):
    seen = []
    original = onnxrt.InferenceSession._create_session

    def spy(self):
        seen.append(gc.isenabled())
        original(self)

    monkeypatch.setattr(onnxrt.InferenceSession, "_create_session", spy)
    gc.enable()
    onnxrt.InferenceSession(models.add_model().SerializeToString())
    assert seen == [False] and gc.isenabled()
