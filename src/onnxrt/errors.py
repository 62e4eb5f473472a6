"""The exceptions users catch, named and numbered like onnxruntime's.

onnxruntime raises one class per status code, each formatted as
``[ONNXRuntimeError] : <code> : <STATUS> : <message>``. Code written against
onnxruntime catches these classes by name, so onnxrt keeps the names, the
codes and the message shape.
"""

from __future__ import annotations


class OrtError(Exception):
    """Common base of onnxrt's status exceptions (onnxruntime's have none; this adds one)."""

    code = 1
    status = "FAIL"

    def __init__(self, message: str = "") -> None:
        self.message = message
        super().__init__(f"[ONNXRuntimeError] : {self.code} : {self.status} : {message}")


class Fail(OrtError):
    code, status = 1, "FAIL"


class InvalidArgument(OrtError):
    code, status = 2, "INVALID_ARGUMENT"


class NoSuchFile(OrtError):
    code, status = 3, "NO_SUCHFILE"


class NoModel(OrtError):
    code, status = 4, "NO_MODEL"


class EngineError(OrtError):
    code, status = 5, "ENGINE_ERROR"


class RuntimeException(OrtError):
    code, status = 6, "RUNTIME_EXCEPTION"


class InvalidProtobuf(OrtError):
    code, status = 7, "INVALID_PROTOBUF"


class ModelLoaded(OrtError):
    code, status = 8, "MODEL_LOADED"


class NotImplemented(OrtError):  # noqa: A001 - onnxruntime's name
    code, status = 9, "NOT_IMPLEMENTED"


class InvalidGraph(OrtError):
    code, status = 10, "INVALID_GRAPH"


class EPFail(OrtError):
    code, status = 11, "EP_FAIL"


class ModelLoadCanceled(OrtError):
    code, status = 12, "MODEL_LOAD_CANCELED"


class ModelRequiresCompilation(OrtError):
    code, status = 13, "MODEL_REQUIRES_COMPILATION"


class NotFound(OrtError):
    code, status = 14, "NOT_FOUND"


__all__ = [
    "OrtError",
    "Fail",
    "InvalidArgument",
    "NoSuchFile",
    "NoModel",
    "EngineError",
    "RuntimeException",
    "InvalidProtobuf",
    "ModelLoaded",
    "NotImplemented",
    "InvalidGraph",
    "EPFail",
    "ModelLoadCanceled",
    "ModelRequiresCompilation",
    "NotFound",
]
