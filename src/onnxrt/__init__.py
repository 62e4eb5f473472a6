"""onnxrt: ONNX Runtime in Python. ``import onnxrt as ort`` and keep your onnxruntime code."""

from __future__ import annotations

from onnxrt._lazy_imports import defer_sympy as _defer_sympy

_defer_sympy()

from onnxrt import ops as _ops  # noqa: F401  (registers every kernel)
from onnxrt.errors import (  # noqa: F401
    EngineError,
    EPFail,
    Fail,
    InvalidArgument,
    InvalidGraph,
    InvalidProtobuf,
    ModelLoaded,
    NoModel,
    NoSuchFile,
    NotFound,
    NotImplemented,
    OrtError,
    RuntimeException,
)
from onnxrt.options import ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions, SessionOptions
from onnxrt.ortvalue import OrtValue
from onnxrt.providers import get_all_providers, get_available_providers
from onnxrt.session import InferenceSession, ModelMetadata, NodeArg
from onnxrt.version import __version__

version = __version__


def get_device() -> str:
    return "CPU"


def get_version_string() -> str:
    return __version__


def get_build_info() -> str:
    return f"onnxrt {__version__} (pure Python, numpy)"


def set_default_logger_severity(severity: int) -> None:
    from onnxrt import logging as _logging

    _logging.set_severity(severity)


def set_default_logger_verbosity(verbosity: int) -> None:
    pass


def set_seed(seed: int) -> None:
    from onnxrt.ops import _random

    _random.set_seed(seed)


__all__ = [
    "InferenceSession",
    "SessionOptions",
    "RunOptions",
    "OrtValue",
    "NodeArg",
    "ModelMetadata",
    "GraphOptimizationLevel",
    "ExecutionMode",
    "ExecutionOrder",
    "get_available_providers",
    "get_all_providers",
    "get_device",
    "get_version_string",
    "get_build_info",
    "set_default_logger_severity",
    "set_seed",
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
    "NotFound",
    "OrtError",
]
