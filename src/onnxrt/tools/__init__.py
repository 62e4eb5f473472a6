"""Tools around the engine, each importable and behind the ``onnxrt`` command (see ``onnxrt.cli``)."""
