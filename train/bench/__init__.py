"""Measuring and verifying on the hardware at hand: `dali-has bench` (is training input-bound?) and `dali-has gpu-check`."""
