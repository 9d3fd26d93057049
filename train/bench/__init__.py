"""Measuring and verifying on the hardware at hand: `dali-has bench` (is training input-bound?), `dali-has
gpu-check`, and developer micro-benchmarks of single operators."""
