"""Weakly-supervised temporal action localization (paper §3.2, §4.2.3): model, training, 1-D localization,
the synthetic set."""
