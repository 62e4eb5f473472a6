"""Micro-benchmarks of single hot ops, onnxrt vs onnxruntime, interleaved in one process.

    python benchmarks/kernels/bench_ops.py [name-substring ...] [--runs N] [--threads T]

Each case is a one-node model on realistic batch-1 shapes (ResNet-50, MobileNetV2, BERT-base layers).
Prints the median time of each runtime and the ratio onnxrt/onnxruntime.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _model(op_type: str, inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray], out_rank: int,
           opset: int = 17, domain: str = "", **attrs) -> onnx.ModelProto:
    names = list(inputs) + list(consts)
    node = helper.make_node(op_type, names, ["Y"], domain=domain, **attrs)
    graph = helper.make_graph(
        [node], "bench",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape) for n, a in inputs.items()],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None] * out_rank)],
        [numpy_helper.from_array(a, n) for n, a in consts.items()],
    )
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=opsets, ir_version=9)


def _rand(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def _conv(name, c_in, c_out, hw, k, stride=1, group=1):
    pad = k // 2
    return name, _model("Conv", {"X": _rand(1, c_in, hw, hw)},
                        {"W": _rand(c_out, c_in // group, k, k), "B": _rand(c_out)}, 4,
                        kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)


def cases() -> list[tuple[str, onnx.ModelProto]]:
    seq = 128
    return [
        _conv("conv7x7s2_stem_3x64_224", 3, 64, 224, 7, 2),
        _conv("conv3x3_64_56", 64, 64, 56, 3),
        _conv("conv3x3_128_28", 128, 128, 28, 3),
        _conv("conv3x3_256_14", 256, 256, 14, 3),
        _conv("conv3x3_512_7", 512, 512, 7, 3),
        _conv("conv3x3s2_128_56", 128, 128, 56, 3, 2),
        _conv("conv1x1_256x64_56", 256, 64, 56, 1),
        _conv("conv1x1_1024x256_14", 1024, 256, 14, 1),
        _conv("conv1x1_16x32_320", 16, 32, 320, 1),  # PP-OCR detector at 640x640: few channels, large maps
        _conv("conv1x1_12x96_160", 12, 96, 160, 1),
        _conv("conv1x1_192x192_40", 192, 192, 40, 1),
        _conv("dw3x3_96_112_s2", 96, 96, 112, 3, 2, 96),
        _conv("dw3x3_144_56", 144, 144, 56, 3, 1, 144),
        _conv("dw3x3_384_14", 384, 384, 14, 3, 1, 384),
        _conv("dw3x3_960_7", 960, 960, 7, 3, 1, 960),
        _conv("dw7x7_96_56", 96, 96, 56, 7, 1, 96),
        _conv("dw5x5_192_40", 192, 192, 40, 5, 1, 192),  # PP-OCR detector (PP-LCNet) at 640x640
        _conv("dw5x5_16_320", 16, 16, 320, 5, 1, 16),
        _conv("dw7x7_384_14", 384, 384, 14, 7, 1, 384),
        _conv("dw7x7_768_7", 768, 768, 7, 7, 1, 768),
        ("convT4x4s2_64_28", _model("ConvTranspose", {"X": _rand(1, 128, 28, 28)}, {"W": _rand(128, 64, 4, 4)}, 4,
                                    kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1])),
        ("maxpool3x3s2_64_112", _model("MaxPool", {"X": _rand(1, 64, 112, 112)}, {}, 4,
                                       kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
        ("gap_2048_7", _model("GlobalAveragePool", {"X": _rand(1, 2048, 7, 7)}, {}, 4)),
        ("avgpool3x3_256_28", _model("AveragePool", {"X": _rand(1, 256, 28, 28)}, {}, 4,
                                     kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
        ("relu_64_112", _model("Relu", {"X": _rand(1, 64, 112, 112)}, {}, 4)),
        ("batchnorm_64_112", _model("BatchNormalization", {"X": _rand(1, 64, 112, 112)},
                                    {"s": _rand(64), "b": _rand(64), "m": _rand(64),
                                     "v": np.abs(_rand(64)) + 1}, 4)),
        ("matmul_bert_qkv", _model("MatMul", {"A": _rand(1, seq, 768)}, {"B": _rand(768, 768)}, 3)),
        ("matmul_bert_ffn", _model("MatMul", {"A": _rand(1, seq, 768)}, {"B": _rand(768, 3072)}, 3)),
        ("matmul_bert_scores", _model("MatMul", {"A": _rand(1, 12, seq, 64), "B": _rand(1, 12, 64, seq)}, {}, 4)),
        ("gemm_fc_2048x1000", _model("Gemm", {"A": _rand(1, 2048)}, {"B": _rand(1000, 2048), "C": _rand(1000)}, 2,
                                     transB=1)),
        ("softmax_bert_12x128x128", _model("Softmax", {"X": _rand(1, 12, seq, seq)}, {}, 4, axis=-1)),
        ("layernorm_bert_128x768", _model("LayerNormalization", {"X": _rand(1, seq, 768)},
                                          {"s": _rand(768), "b": _rand(768)}, 3, axis=-1)),
        ("gelu_bert_128x3072", _model("Gelu", {"X": _rand(1, seq, 3072)}, {}, 3, opset=20)),
        ("erf_bert_128x3072", _model("Erf", {"X": _rand(1, seq, 3072)}, {}, 3)),
        ("tanh_128x3072", _model("Tanh", {"X": _rand(1, seq, 3072)}, {}, 3)),
        ("sigmoid_128x3072", _model("Sigmoid", {"X": _rand(1, seq, 3072)}, {}, 3)),
        ("add_128x3072", _model("Add", {"A": _rand(1, seq, 3072)}, {"B": _rand(3072)}, 3)),
        ("mul_128x3072", _model("Mul", {"A": _rand(1, seq, 3072), "B": _rand(1, seq, 3072)}, {}, 3)),
        ("resize_up2_64_56", _model("Resize", {"X": _rand(1, 64, 56, 56)},
                                    {"roi": np.zeros(0, np.float32), "scales": np.array([1, 1, 2, 2], np.float32)},
                                    4, mode="linear")),
    ]


def _time(fn: Callable[[], object], clock: Callable[[], float] = time.perf_counter) -> float:
    t = clock()
    fn()
    return clock() - t


def main() -> None:
    import onnxruntime

    import onnxrt

    ap = argparse.ArgumentParser()
    ap.add_argument("filters", nargs="*")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cpu", action="store_true",
                    help="one thread each, timed by the calling thread's CPU time (robust on a busy machine)")
    args = ap.parse_args()
    clock = time.perf_counter
    if args.cpu:
        args.threads, clock = 1, time.thread_time
    from onnxrt.runtime import threads
    ratios = []
    for name, model in cases():
        if args.filters and not any(f in name for f in args.filters):
            continue
        data = model.SerializeToString()
        so = onnxrt.SessionOptions()
        so.intra_op_num_threads = args.threads
        mine = onnxrt.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        so2 = onnxruntime.SessionOptions()
        so2.intra_op_num_threads = args.threads
        ref = onnxruntime.InferenceSession(data, so2, providers=["CPUExecutionProvider"])
        feeds = {i.name: _rand(*i.shape) for i in ref.get_inputs()}
        a = mine.run(None, feeds)[0]
        b = ref.run(None, feeds)[0]
        err = float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30))
        t_mine, t_ref = [], []
        for _ in range(args.runs):
            with threads.run_scope(args.threads):  # what the session does around run
                t_mine.append(_time(lambda: mine.run(None, feeds), clock))
            t_ref.append(_time(lambda: ref.run(None, feeds), clock))
        m, r = np.median(t_mine) * 1e3, np.median(t_ref) * 1e3
        ratios.append(m / r)
        print(f"{name:28s} onnxrt {m:8.3f} ms  ort {r:8.3f} ms  ratio {m / r:6.2f}  relerr {err:.1e}", flush=True)
    if ratios:
        print(f"geomean ratio {np.exp(np.mean(np.log(ratios))):.2f}")


if __name__ == "__main__":
    main()
