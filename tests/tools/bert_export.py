"""Export a random-init BERT (transformers + torch) to ONNX, cached under the git-ignored .cache/.

``python tests/tools/bert_export.py --layers 12 --hidden 768`` makes a bert-base-sized model for the
measurements in docs/quantization.md; the tests use a 2-layer, hidden-64 one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CACHE = Path(__file__).resolve().parents[2] / ".cache" / "quantization"


def export_bert(layers: int = 2, hidden: int = 64, heads: int = 4, vocab: int = 30522, seq: int = 16) -> Path:
    from onnxrt.testing.models import export_bert as export

    return export(CACHE / f"bert_l{layers}_h{hidden}_v{vocab}.onnx", hidden=hidden, layers=layers, heads=heads,
                  vocab=vocab, seq=seq, outputs=("last_hidden_state", "pooler_output"), eager_attention=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    args = parser.parse_args()
    print(export_bert(args.layers, args.hidden, args.heads))
