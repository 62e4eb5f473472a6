"""Enumerations of onnxruntime.quantization: same names, same meanings."""

from __future__ import annotations

from enum import Enum

import ml_dtypes
import numpy as np
from onnx import TensorProto


class QuantType(Enum):
    """Element type of quantized values."""

    QInt8 = 0
    QUInt8 = 1
    QInt16 = 3
    QUInt16 = 4
    QInt4 = 5
    QUInt4 = 6

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def from_string(text: str) -> "QuantType":
        for member in QuantType:
            if member.name.lower() == str(text).lower():
                return member
        raise ValueError(f"unknown QuantType {text!r}; expected one of {[m.name for m in QuantType]}")

    @property
    def tensor_type(self) -> int:
        return _TENSOR_TYPE[self]

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(_NUMPY[self])

    @property
    def bits(self) -> int:
        return {QuantType.QInt4: 4, QuantType.QUInt4: 4, QuantType.QInt16: 16, QuantType.QUInt16: 16}.get(self, 8)

    @property
    def signed(self) -> bool:
        return self in (QuantType.QInt8, QuantType.QInt16, QuantType.QInt4)

    def qrange(self, symmetric: bool = False, reduce_range: bool = False) -> tuple[int, int]:
        """Integer range used for quantization. Symmetric signed ranges drop the most negative value
        so that zero sits in the middle; reduce_range uses one bit fewer (older x86 VNNI-less CPUs)."""
        bits = self.bits - 1 if reduce_range else self.bits
        if self.signed:
            low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            return (-high, high) if symmetric else (low, high)
        return 0, 2**bits - 1


_TENSOR_TYPE = {QuantType.QInt8: TensorProto.INT8, QuantType.QUInt8: TensorProto.UINT8,
                QuantType.QInt16: TensorProto.INT16, QuantType.QUInt16: TensorProto.UINT16,
                QuantType.QInt4: TensorProto.INT4, QuantType.QUInt4: TensorProto.UINT4}
_NUMPY = {QuantType.QInt8: np.int8, QuantType.QUInt8: np.uint8, QuantType.QInt16: np.int16,
          QuantType.QUInt16: np.uint16, QuantType.QInt4: ml_dtypes.int4, QuantType.QUInt4: ml_dtypes.uint4}


class QuantFormat(Enum):
    """QOperator: quantized operators (QLinearConv, ...). QDQ: QuantizeLinear/DequantizeLinear pairs
    around the original float operators (the runtime fuses them)."""

    QOperator = 0
    QDQ = 1

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def from_string(text: str) -> "QuantFormat":
        for member in QuantFormat:
            if member.name.lower() == str(text).lower():
                return member
        raise ValueError(f"unknown QuantFormat {text!r}; expected QDQ or QOperator")


class CalibrationMethod(Enum):
    """How activation ranges are chosen from calibration data."""

    MinMax = 0
    Entropy = 1
    Percentile = 2

    @staticmethod
    def from_string(text: str) -> "CalibrationMethod":
        for member in CalibrationMethod:
            if member.name.lower() == str(text).lower():
                return member
        raise ValueError(f"unknown CalibrationMethod {text!r}; expected MinMax, Entropy or Percentile")
