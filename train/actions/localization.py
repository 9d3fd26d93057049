"""Weakly supervised temporal action localization from a 1-D CAM, scored by mAP (paper §4.2.3).

Predictions: for each class the video is likely to contain, the stretches where its CAM exceeds a fraction
(0.5) of the CAM's maximum, each one segment with a score. Evaluation: per class, all predictions of the data
set sorted by score; a prediction is a true positive when its temporal IoU with a not yet matched ground-truth
segment of the same video and class reaches θ (each ground truth matched at most once, best IoU first);
AP is the area under the interpolated precision-recall curve, as ActivityNet's evaluation code
(compute_average_precision_detection) computes it, matching included; mAP averages AP over the classes that have
ground truth. THUMOS14's own Matlab toolkit was not compared: its AP may not interpolate, and can read otherwise,
so compare these numbers with numbers computed the same way.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage
from torchvision.ops import box_iou

PAPER_CAM_THRESHOLD = 0.5
THUMOS_IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
CLASS_THRESHOLD = 0.1  # classes with at least this probability (and always the top one) get predictions


class Segment(NamedTuple):
    video: int
    label: int
    start: float
    end: float
    score: float = 1.0  # predictions only; ground truth leaves it at 1


def cam_segments(cam: np.ndarray, threshold: float = PAPER_CAM_THRESHOLD) -> list[tuple[int, int, float]]:
    """Runs of a 1-D CAM above `threshold` × its maximum: (start, end exclusive, mean CAM / max) each.

    A CAM whose maximum is not positive has no foreground.
    """
    cam = np.asarray(cam, dtype=np.float64)
    if cam.ndim != 1:
        raise ValueError(f"cam has shape {cam.shape}; expected one value per time step")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold={threshold!r} must be in [0, 1)")
    peak = cam.max(initial=0.0)
    if peak <= 0:
        return []
    runs, _ = ndimage.label(cam > threshold * peak)
    out = []
    for run in ndimage.find_objects(runs):
        start, end = run[0].start, run[0].stop
        out.append((start, end, float(cam[start:end].mean() / peak)))
    return out


def predict_segments(video: int, cams: np.ndarray, probabilities: np.ndarray, frames: int,
                     threshold: float = PAPER_CAM_THRESHOLD, class_threshold: float = CLASS_THRESHOLD
                     ) -> list[Segment]:
    """Predicted segments of one video from its CAMs [classes, F_total] and class probabilities.

    Positions are mapped back to the video's own `frames` (position j covers [j, j + 1) * frames / F_total);
    a segment's score is the class probability times its mean CAM relative to the CAM's maximum.
    """
    steps = cams.shape[1]
    classes = set(np.flatnonzero(probabilities >= class_threshold)) | {int(np.argmax(probabilities))}
    scale = frames / steps
    return [Segment(video, int(c), start * scale, end * scale, float(probabilities[c]) * strength)
            for c in sorted(classes) for start, end, strength in cam_segments(cams[c], threshold)]


def temporal_iou(segment: tuple[float, float], others: Sequence[tuple[float, float]]) -> np.ndarray:
    """IoU of one [start, end) interval with each of `others`."""
    if not len(others):
        return np.zeros(0)
    # Intervals as boxes of height 1 on the same rows: their box IoU is the interval IoU.
    box = lambda s, e: [s, 0.0, e, 1.0]  # noqa: E731
    return box_iou(torch.tensor([box(*segment)], dtype=torch.float64),
                   torch.tensor([box(s, e) for s, e in others], dtype=torch.float64))[0].numpy()


def average_precision(predictions: Sequence[Segment], ground_truth: Sequence[Segment], iou_threshold: float
                      ) -> float:
    """AP of one class's predictions against that class's ground truth (all videos together)."""
    if not ground_truth:
        raise ValueError("no ground truth for this class: its AP is undefined")
    by_video: dict[int, list[Segment]] = {}
    for gt in ground_truth:
        by_video.setdefault(gt.video, []).append(gt)
    matched = {video: np.zeros(len(gts), dtype=bool) for video, gts in by_video.items()}
    ranked = sorted(predictions, key=lambda p: -p.score)  # stable: ties keep their given order
    hits = np.zeros(len(ranked))
    for i, pred in enumerate(ranked):
        gts = by_video.get(pred.video, [])
        ious = temporal_iou((pred.start, pred.end), [(g.start, g.end) for g in gts])
        for j in np.argsort(-ious, kind="stable"):
            if ious[j] < iou_threshold:
                break
            if not matched[pred.video][j]:
                matched[pred.video][j] = True
                hits[i] = 1
                break
    true_positives = np.cumsum(hits)
    recall = true_positives / len(ground_truth)
    precision = true_positives / np.arange(1, len(ranked) + 1)
    return _interpolated_area(precision, recall)


def mean_average_precision(predictions: Sequence[Segment], ground_truth: Sequence[Segment],
                           iou_thresholds: Sequence[float] = THUMOS_IOU_THRESHOLDS) -> dict[float, float]:
    """mAP at each IoU threshold, over the classes present in the ground truth."""
    classes = sorted({gt.label for gt in ground_truth})
    return {theta: float(np.mean([
        average_precision([p for p in predictions if p.label == c], [g for g in ground_truth if g.label == c],
                          theta) for c in classes])) for theta in iou_thresholds}


def _interpolated_area(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision-recall curve with precision made non-increasing (VOC / ActivityNet style)."""
    p = np.concatenate([[0.0], precision, [0.0]])
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))
