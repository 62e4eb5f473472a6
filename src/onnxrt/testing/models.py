"""Models exported on demand for tests and benchmarks, with torch and transformers at random init.

torch and transformers are imported only when a function is called: they are test-time tools, never
runtime dependencies of onnxrt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_bert(
    path: Path | str,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    vocab: int = 30522,
    seq: int = 16,
    batch: int = 1,
    max_positions: int = 128,
    inputs: Sequence[str] = BERT_INPUTS[:2],
    outputs: Sequence[str] = ("last_hidden_state",),
    eager_attention: bool = True,
) -> Path:
    """A randomly initialised (seed 0) transformers BertModel exported to ``path`` as one ONNX file.

    ``inputs`` is a prefix of (input_ids, attention_mask, token_type_ids); ``outputs`` names
    BertModel outputs (last_hidden_state, pooler_output). Batch and sequence are symbolic. Eager
    attention gives the graph onnxruntime's and onnxrt's fusion patterns match. An existing file is
    reused.
    """
    path = Path(path)
    if path.is_file():
        return path
    import onnx
    import torch
    import transformers

    inputs, outputs = list(inputs), list(outputs)
    if inputs != list(BERT_INPUTS[: len(inputs)]):
        raise ValueError(f"inputs must be a prefix of {BERT_INPUTS}, got {inputs}")
    config = transformers.BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=max_positions, type_vocab_size=2,
    )
    if eager_attention:
        config._attn_implementation = "eager"
    torch.manual_seed(0)
    bert = transformers.BertModel(config).eval()

    class Wrapper(torch.nn.Module):  # a plain positional signature for the exporter
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, *args):
            result = self.bert(**dict(zip(inputs, args)), return_dict=True)
            values = tuple(getattr(result, name) for name in outputs)
            return values[0] if len(values) == 1 else values

    samples = {
        "input_ids": torch.randint(0, vocab, (batch, seq)),
        "attention_mask": torch.ones(batch, seq, dtype=torch.int64),
        "token_type_ids": torch.zeros(batch, seq, dtype=torch.int64),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            Wrapper().eval(), tuple(samples[n] for n in inputs), str(tmp), input_names=inputs,
            output_names=outputs,
            dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in inputs},
                          **{n: {0: "batch", 1: "seq"} if n == "last_hidden_state" else {0: "batch"} for n in outputs}},
            opset_version=17, dynamo=False,
        )
    onnx.save_model(onnx.load(str(tmp)), str(path))  # one self-contained file even if the exporter split it
    tmp.unlink()
    for leftover in path.parent.glob(tmp.name + "*"):
        leftover.unlink()
    return path
