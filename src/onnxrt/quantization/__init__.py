"""Quantization for onnxrt, with onnxruntime.quantization's API.

``quantize_dynamic`` (int8 weights, activations quantized at run time), ``quantize_static``
(calibrated activations; QDQ or QOperator format), ``MatMulNBitsQuantizer`` / ``quantize_matmul_4bits``
(4-bit block-wise weight-only, com.microsoft MatMulNBits). Every function writes an ordinary ONNX file
that onnxruntime runs too, and returns a :class:`QuantizationReport` (sizes, output differences).
"""

from onnxrt.quantization.calibrate import CalibrationDataReader, ListDataReader
from onnxrt.quantization.matmul_nbits import MatMulNBitsQuantizer, quantize_blockwise_4bits, quantize_matmul_4bits
from onnxrt.quantization.quantize import (compute_scale_zero_point, quantize_array, quantize_dynamic,
                                          quantize_static)
from onnxrt.quantization.report import OutputDifference, QuantizationReport
from onnxrt.quantization.types import CalibrationMethod, QuantFormat, QuantType

__all__ = [
    "CalibrationDataReader", "CalibrationMethod", "ListDataReader", "MatMulNBitsQuantizer", "OutputDifference",
    "QuantFormat", "QuantType", "QuantizationReport", "compute_scale_zero_point", "quantize_array",
    "quantize_blockwise_4bits", "quantize_dynamic", "quantize_matmul_4bits", "quantize_static",
]
