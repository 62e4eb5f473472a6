"""4-bit block-wise weight-only quantization: MatMul with a constant weight -> com.microsoft MatMulNBits.

Each column of the weight ``B[K, N]`` is cut into blocks of ``block_size`` rows; each block gets its own
scale (and zero point when asymmetric). The packed layout is onnxruntime's: ``B`` as uint8
``[N, n_blocks, block_size / 2]`` with two 4-bit values per byte (lower nibble first), ``scales`` as
``[N * n_blocks]`` and zero points packed two per byte, ``[N * ceil(n_blocks / 2)]``.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxrt.quantization.quantize import MS_DOMAIN, ModelInput, load_model, save_model
from onnxrt.quantization.report import QuantizationReport, build_report


def quantize_blockwise_4bits(weight: np.ndarray, block_size: int, symmetric: bool
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Quantize ``weight[K, N]``: returns (packed [N, n_blocks, block_size//2] uint8, scales [N, n_blocks]
    float32, packed zero points [N, ceil(n_blocks/2)] uint8 or None when symmetric)."""
    if weight.ndim != 2:
        raise ValueError(f"MatMulNBits weights must be 2-D, got shape {weight.shape}")
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 16, got {block_size}")
    k, n = weight.shape
    n_blocks = (k + block_size - 1) // block_size
    padded = np.zeros((n_blocks * block_size, n), np.float32)
    padded[:k] = weight
    blocks = padded.T.reshape(n, n_blocks, block_size)  # [N, n_blocks, block]
    if symmetric:
        # the value of largest magnitude maps exactly to -8; zero point is 8 (the implicit default)
        index = np.abs(blocks).argmax(axis=2)[..., None]
        extreme = np.take_along_axis(blocks, index, axis=2)[..., 0]
        scales = extreme / -8.0
        safe = np.where(scales != 0, scales, 1.0)
        q = np.clip(np.rint(blocks / safe[..., None]), -8, 7) + 8
        zero_points = None
    else:
        low = np.minimum(blocks.min(axis=2), 0.0)
        high = np.maximum(blocks.max(axis=2), 0.0)
        scales = (high - low) / 15.0
        safe = np.where(scales != 0, scales, 1.0)
        zp = np.clip(np.rint(-low / safe), 0, 15)
        q = np.clip(np.rint(blocks / safe[..., None]) + zp[..., None], 0, 15)
        zp_padded = np.zeros((n, n_blocks + (n_blocks & 1)), np.uint8)
        zp_padded[:, :n_blocks] = zp
        zero_points = (zp_padded[:, 0::2] | (zp_padded[:, 1::2] << 4)).astype(np.uint8)
    q = q.astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return packed, np.where(scales != 0, scales, 0).astype(np.float32), zero_points


class MatMulNBitsQuantizer:
    """Rewrites MatMul nodes whose second input is a constant 2-D float weight into MatMulNBits (4 bits).

    ``model``: ModelProto or path; ``block_size``: rows per block (power of two >= 16);
    ``is_symmetric``: symmetric blocks (no zero points) or asymmetric; ``nodes_to_exclude``: node names;
    ``accuracy_level``: passed through to the kernel (0 = unset).
    """

    def __init__(self, model: ModelInput, block_size: int = 128, is_symmetric: bool = False,
                 accuracy_level: int | None = None, nodes_to_exclude: Sequence[str] | None = None,
                 nodes_to_include: Sequence[str] | None = None):
        self.float_model = load_model(model)
        self.model = load_model(self.float_model)
        self.block_size = block_size
        self.is_symmetric = is_symmetric
        self.accuracy_level = accuracy_level
        self.nodes_to_exclude = set(nodes_to_exclude or ())
        self.nodes_to_include = set(nodes_to_include) if nodes_to_include else None
        self.quantized_nodes: list[str] = []

    def process(self) -> onnx.ModelProto:
        graph = self.model.graph
        graph_inputs = {i.name for i in graph.input}
        initializers = {t.name: t for t in graph.initializer if t.name not in graph_inputs}
        uses: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                uses[name] = uses.get(name, 0) + 1
        new_nodes, new_inits, replaced = [], [], set()
        for node in graph.node:
            tensor = initializers.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
            wanted = node.name not in self.nodes_to_exclude and (self.nodes_to_include is None
                                                                 or node.name in self.nodes_to_include)
            if tensor is None or not wanted or tensor.data_type != onnx.TensorProto.FLOAT or len(tensor.dims) != 2:
                new_nodes.append(node)
                continue
            weight = numpy_helper.to_array(tensor)
            k, n = weight.shape
            packed, scales, zero_points = quantize_blockwise_4bits(weight, self.block_size, self.is_symmetric)
            base = f"{tensor.name}_Q4"
            inputs = [base, f"{base}_scales"]
            new_inits += [numpy_helper.from_array(packed, base), numpy_helper.from_array(scales.reshape(-1), inputs[1])]
            if zero_points is not None:
                inputs.append(f"{base}_zero_points")
                new_inits.append(numpy_helper.from_array(zero_points.reshape(-1), inputs[2]))
            attrs: dict[str, Any] = {"K": k, "N": n, "bits": 4, "block_size": self.block_size}
            if self.accuracy_level is not None:
                attrs["accuracy_level"] = self.accuracy_level
            new_nodes.append(helper.make_node("MatMulNBits", [node.input[0], *inputs], list(node.output),
                                              name=(node.name or f"{tensor.name}_MatMul") + "_Q4", domain=MS_DOMAIN,
                                              **attrs))
            replaced.add(tensor.name)
            self.quantized_nodes.append(node.name)
        del graph.node[:]
        graph.node.extend(new_nodes)
        still_used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        keep = [t for t in graph.initializer if t.name not in replaced or t.name in still_used]
        del graph.initializer[:]
        graph.initializer.extend(keep + new_inits)
        if new_nodes and not any(o.domain == MS_DOMAIN for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        onnx.checker.check_model(self.model)
        return self.model

    def save(self, path: str | os.PathLike, use_external_data_format: bool = False) -> None:
        save_model(self.model, path, use_external_data_format)


def quantize_matmul_4bits(model_input: ModelInput, model_output: str | os.PathLike | None, block_size: int = 128,
                          is_symmetric: bool = False, nodes_to_exclude: Sequence[str] | None = None,
                          accuracy_level: int | None = None, report_data=None) -> QuantizationReport:
    """Convenience wrapper: 4-bit block-wise weight-only quantization of every MatMul with a constant weight."""
    from onnxrt.quantization.calibrate import as_reader

    quantizer = MatMulNBitsQuantizer(model_input, block_size, is_symmetric, accuracy_level, nodes_to_exclude)
    model = quantizer.process()
    save_model(model, model_output)
    return build_report(quantizer.float_model, model, as_reader(report_data) if report_data is not None else None,
                        model_output)
