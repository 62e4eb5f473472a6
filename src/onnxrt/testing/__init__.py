"""Helpers for onnxrt's tests and benchmarks (models made on demand). Not needed to run models."""
