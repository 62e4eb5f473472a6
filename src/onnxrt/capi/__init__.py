"""Mirror of ``onnxruntime.capi`` so that imports written for onnxruntime keep working."""
