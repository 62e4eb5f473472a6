"""Export a random-init BERT (transformers + torch) to ONNX, cached under the git-ignored .cache/.

``python tests/tools/bert_export.py --layers 12 --hidden 768`` makes a bert-base-sized model for the
measurements in docs/quantization.md; the tests use a 2-layer, hidden-64 one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "quantization"


def export_bert(layers: int = 2, hidden: int = 64, heads: int = 4, vocab: int = 30522, seq: int = 16) -> Path:
    path = CACHE / f"bert_l{layers}_h{hidden}_v{vocab}.onnx"
    if path.is_file():
        return path
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=4 * hidden, max_position_embeddings=128)
    bert = BertModel(config).eval()

    class Wrapper(torch.nn.Module):  # plain positional signature for the exporter
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
            return out.last_hidden_state, out.pooler_output

    model = Wrapper().eval()
    ids = torch.randint(0, vocab, (1, seq))
    mask = torch.ones(1, seq, dtype=torch.int64)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(model, (ids, mask), str(tmp), input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state", "pooler_output"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                    "last_hidden_state": {0: "batch", 1: "seq"}})
    import onnx

    onnx.save_model(onnx.load(str(tmp)), str(path))  # one self-contained file
    tmp.unlink()
    for leftover in CACHE.glob("*.tmp.onnx.data"):
        leftover.unlink()
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()
    print(export_bert(args.layers, args.hidden, args.heads))
