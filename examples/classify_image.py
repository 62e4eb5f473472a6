"""Classify an image with ResNet-50 on onnxrt and print the top-5 classes and the latency.

The model is the ResNet-50 that the `onnx` package ships in its backend test data
(onnx/backend/test/data/light/light_resnet50.onnx): the real ResNet-50 graph (Conv, BatchNorm,
Relu, MaxPool, Gemm, Softmax; 25.6M parameters), whose weights are constant fills rather than
trained values, so the top-5 shows the pipeline working end to end, not a meaningful label.
Pass --model to run any other image classifier (NCHW float input, ImageNet preprocessing).

    python examples/classify_image.py [--image photo.jpg] [--model model.onnx] [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import onnxrt as ort

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def default_model() -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")


def load_image(path: str | None, size: int = 224) -> np.ndarray:
    """An RGB image as float32 HWC in [0, 1]: the file given (needs Pillow), else a synthetic test card."""
    if path:
        from PIL import Image

        image = Image.open(path).convert("RGB")
        short = min(image.size)
        scale = 256 / short
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        image = image.crop((left, top, left + size, top + size))
        return np.asarray(image, dtype=np.float32) / 255.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    return np.stack([x, y, 0.5 + 0.5 * np.sin(8 * np.pi * x * y)], axis=-1)


def preprocess(image_hwc: np.ndarray) -> np.ndarray:
    normalized = (image_hwc - IMAGENET_MEAN) / IMAGENET_STD
    return normalized.transpose(2, 0, 1)[np.newaxis].astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="image file (JPEG/PNG/...; needs Pillow). Default: a synthetic test card")
    parser.add_argument("--model", default=default_model(), help="ONNX image classifier (default: onnx's ResNet-50)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs after one warm-up run")
    args = parser.parse_args()

    t0 = time.perf_counter()
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1000
    input_name = session.get_inputs()[0].name
    batch = preprocess(load_image(args.image))

    t0 = time.perf_counter()
    (scores,) = session.run(None, {input_name: batch})[:1]
    first_ms = (time.perf_counter() - t0) * 1000
    latencies = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        session.run(None, {input_name: batch})
        latencies.append((time.perf_counter() - t0) * 1000)

    scores = scores.reshape(-1)
    if not np.isclose(scores.sum(), 1.0, atol=1e-3):  # logits: turn into probabilities
        e = np.exp(scores - scores.max())
        scores = e / e.sum()
    top5 = np.argsort(-scores, kind="stable")[:5]
    print(f"model: {os.path.basename(args.model)}  input: {input_name} {list(batch.shape)}")
    print("top-5 (class index: probability):")
    for rank, index in enumerate(top5, 1):
        print(f"  {rank}. class {int(index):4d}: {scores[index]:.4f}")
    print(
        f"latency: median {statistics.median(latencies):.1f} ms over {args.runs} runs "
        f"(first run {first_ms:.1f} ms, session load {load_ms:.1f} ms)"
    )


if __name__ == "__main__":
    main()
