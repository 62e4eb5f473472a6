"""ImageDecoder: encoded image bytes (1-D uint8) -> HWC uint8 pixels, decoded with Pillow."""

from __future__ import annotations

import io

import numpy as np

from onnxrt.errors import InvalidArgument, InvalidGraph
from onnxrt.errors import NotImplemented as OrtNotImplemented
from onnxrt.ops.registry import KernelContext, op_factory

_CHANNELS = {"RGB": 3, "BGR": 3, "Grayscale": 1}


def _pillow():
    try:
        import PIL.Image  # noqa: PLC0415 - optional dependency, imported on first use
    except ImportError as e:
        raise OrtNotImplemented(
            "ImageDecoder needs the Pillow package to decode images; install it with 'pip install Pillow'."
        ) from e
    return PIL.Image


@op_factory("ImageDecoder", 20)
def image_decoder(ctx: KernelContext):
    pixel_format = ctx.attrs.get("pixel_format", "RGB") or "RGB"
    if pixel_format not in _CHANNELS:
        raise InvalidGraph(f"{ctx.describe()}: pixel_format must be RGB, BGR or Grayscale, got '{pixel_format}'")
    channels = _CHANNELS[pixel_format]

    def run(encoded_stream):
        data = np.asarray(encoded_stream)
        if data.dtype != np.uint8:
            raise TypeError(f"ImageDecoder: input 'encoded_stream' must be uint8, got {data.dtype}")
        if data.ndim != 1:
            raise InvalidArgument(
                f"ImageDecoder: input 'encoded_stream' must be 1-D, got shape {list(data.shape)}")
        Image = _pillow()
        try:
            with Image.open(io.BytesIO(data.tobytes())) as img:
                img.load()
                img = img.convert("L" if channels == 1 else "RGB")
                pixels = np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            # the spec: an undecodable stream gives an empty image
            return np.zeros((0, 0, channels), dtype=np.uint8)
        if channels == 1:
            pixels = pixels[:, :, None]
        elif pixel_format == "BGR":
            pixels = pixels[:, :, ::-1]
        return np.ascontiguousarray(pixels)

    return run
