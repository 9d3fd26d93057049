"""Weakly-supervised object localization: CAMs, boxes, metrics, box files, evaluation, pictures, the synthetic set."""
