"""Small transformer and CNN models written by onnxruntime, made on demand for the contrib-op tests.

Every model is exported from a randomly initialised tiny configuration (2 layers, hidden size 64,
4 heads) with torch, then rewritten by onnxruntime: its transformers optimizer (which writes
com.microsoft Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu, ...) and its
own level-ALL graph optimizer saved through ``SessionOptions.optimized_model_filepath`` (which
writes com.microsoft.nchwc ops for CNNs). Files go to the repo's git-ignored ``.cache/`` folder
so that repeated test runs reuse them; nothing here is committed.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parents[2] / ".cache" / "transformer_contrib"

HIDDEN = 64
HEADS = 4
LAYERS = 2
VOCAB = 100
SEQ = 8


def _cache(name: str) -> Path:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    return CACHE_DIR / name


def export_bert(path: Path) -> Path:
    """Tiny BertModel (input_ids, attention_mask, token_type_ids) -> last_hidden_state."""
    from onnxrt.testing.models import BERT_INPUTS, export_bert as export

    # eager attention: the optimizer's fusion patterns match the eager graph
    return export(path, hidden=HIDDEN, layers=LAYERS, heads=HEADS, vocab=VOCAB, seq=SEQ, batch=2, max_positions=64,
                  inputs=BERT_INPUTS)


def export_gpt2(path: Path) -> Path:
    """Tiny GPT2Model (input_ids, attention_mask) -> last_hidden_state, without cache."""
    import torch
    import transformers

    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_positions=64, use_cache=False,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.GPT2Model(config).eval()
    ids = torch.randint(0, VOCAB, (2, SEQ))
    mask = torch.ones(2, SEQ, dtype=torch.int64)

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(
            Wrapper(model), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in ["input_ids", "attention_mask"]},
            opset_version=17, dynamo=False,
        )
    return path


def ort_transformers_optimized(kind: str) -> Path:
    """The model of ``kind`` ('bert' or 'gpt2') rewritten by onnxruntime's transformers optimizer."""
    out = _cache(f"{kind}_tiny_ort_transformers.onnx")
    if out.exists():
        return out
    raw = _cache(f"{kind}_tiny.onnx")
    if not raw.exists():
        (export_bert if kind == "bert" else export_gpt2)(raw)
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(raw), model_type=kind, num_heads=HEADS, hidden_size=HIDDEN, opt_level=0)
    optimized.save_model_to_file(str(out))
    return out


def ort_level_all(source: Path | str, name: str) -> Path:
    """``source`` saved by onnxruntime after its ORT_ENABLE_ALL graph optimizations."""
    out = _cache(f"{name}_ort_all.onnx")
    if out.exists():
        return out
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return out


def onnx_light_model(name: str) -> Path:
    import onnx

    return Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def export_small_cnn(path: Path) -> Path:
    """A small CNN covering what onnxruntime's NCHWc transformer rewrites: a first convolution over
    3 channels, channel counts that are not block multiples (24), a residual Add+Relu, depthwise and
    strided convolutions, max/average/global pools, nearest and bilinear 2x upsampling, Sigmoid."""
    import torch

    class SmallCnn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 24, 3, stride=2, padding=1)
            self.bn = torch.nn.BatchNorm2d(24)
            self.conv_a = torch.nn.Conv2d(24, 24, 3, padding=1)
            self.conv_b = torch.nn.Conv2d(24, 24, 1)
            self.depthwise = torch.nn.Conv2d(24, 24, 3, padding=1, groups=24)
            self.widen = torch.nn.Conv2d(24, 40, 3, stride=2, padding=1)
            self.head = torch.nn.Conv2d(40, 32, 1)
            self.fc = torch.nn.Linear(32, 10)

        def forward(self, x):
            x = torch.relu(self.bn(self.stem(x)))
            x = torch.nn.functional.max_pool2d(x, 3, stride=2, padding=1)
            x = torch.relu(self.conv_b(torch.relu(self.conv_a(x))) + x)
            x = torch.sigmoid(self.depthwise(x))
            x = torch.nn.functional.avg_pool2d(x, 2)
            x = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            x = torch.relu(self.widen(x))
            x = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = torch.relu(self.head(x))
            x = torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
            return self.fc(x)

    torch.manual_seed(0)
    model = SmallCnn().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 1.5)
        torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(path), input_names=["image"],
                          output_names=["logits"], opset_version=17, dynamo=False)
    return path


def small_cnn_level_all() -> Path:
    raw = _cache("small_cnn.onnx")
    if not raw.exists():
        export_small_cnn(raw)
    return ort_level_all(raw, "small_cnn")
