"""``onnx.backend.base`` implementation, so onnx's own backend test runner can drive onnxrt.

    import onnx.backend.test
    import onnxrt.backend
    tests = onnx.backend.test.BackendTest(onnxrt.backend, __name__)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from onnxrt.options import SessionOptions
from onnxrt.session import InferenceSession


class OnnxrtBackendRep(BackendRep):
    def __init__(self, session: InferenceSession) -> None:
        self.session = session
        self._input_names = [i.name for i in session.get_inputs()]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            feed = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            if len(inputs) > len(self._input_names):
                raise ValueError(
                    f"Got {len(inputs)} inputs, the model takes {len(self._input_names)}: {self._input_names}"
                )
            feed = dict(zip(self._input_names, inputs))
        else:
            feed = {self._input_names[0]: inputs}
        return tuple(self.session.run(None, feed))


class OnnxrtBackend(Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU

    @classmethod
    def prepare(cls, model: onnx.ModelProto | str | bytes, device: str = "CPU", **kwargs: Any) -> OnnxrtBackendRep:
        if not cls.supports_device(device):
            raise RuntimeError(f"onnxrt runs on CPU only, not on '{device}'.")
        options = SessionOptions()
        for key, value in kwargs.items():
            if hasattr(options, key):
                setattr(options, key, value)
        source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
        return OnnxrtBackendRep(InferenceSession(source, options))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[Any, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(
        cls,
        node: onnx.NodeProto,
        inputs: Sequence[np.ndarray],
        device: str = "CPU",
        outputs_info: Sequence[tuple[Any, Any]] | None = None,
        **kwargs: Any,
    ) -> tuple[Any, ...]:
        from onnx import helper

        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        graph_inputs = []
        feeds = {}
        for name, value in zip(node.input, inputs):
            if not name:
                continue
            arr = np.asarray(value)
            graph_inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape))
            feeds[name] = arr
        graph_outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
        graph = helper.make_graph([node], "run_node", graph_inputs, graph_outputs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(node.domain or "", opset)])
        session = InferenceSession(model.SerializeToString())
        return tuple(session.run(None, feeds))


prepare = OnnxrtBackend.prepare
run_model = OnnxrtBackend.run_model
run_node = OnnxrtBackend.run_node
supports_device = OnnxrtBackend.supports_device
is_compatible = OnnxrtBackend.is_compatible
