"""Boxes from class activation maps, and the weakly-supervised localization metrics.

Conventions follow clovaai/wsolevaluation (Choe et al., CVPR 2020), `evaluation.py`, so MaxBoxAccV2 here is
their number:

* A CAM is an [H, W] map scaled to [0, 1] (`train.wsol.cam`: min-max for MaxBoxAccV2 as theirs, divided by
  its max for GT-known Loc as in the papers). It is quantized as `uint8(cam * 255)` and the foreground at
  threshold t is `cam_u8 > int(t * max(cam_u8))` (their `scoremap2bbox`: cv2.threshold, THRESH_BINARY, which
  is strict).
* Components are 8-connected (what cv2.findContours traces); we label them with scipy.ndimage.label
  instead of tracing contours. With all components (MaxBoxAccV2), the candidates are what their
  findContours(RETR_TREE) returns: each component's outer border and also the border of each hole in it.
  For one box (GT-known Loc) the largest component is the one with most pixels, the paper's "largest
  connected component"; among equally large ones, the last in scan order (the first of them in cv2's contour
  list). wsolevaluation's single-contour mode takes the largest contour polygon area instead, which differs
  for thin shapes (a one-pixel line has area 0) and can pick another of two parts with equal pixel counts
  (tests/train/test_wsolevaluation_parity.py measures how often).
* A box is [x0, y0, x0 + w, y0 + h] with w, h the pixel extents of the contour (cv2.boundingRect), x1 and
  y1 clipped to W - 1 and H - 1. No foreground at all gives the box [0, 0, 0, 0].
* IoU counts pixels inclusively, area = (x1 - x0 + 1)(y1 - y0 + 1) (their `calculate_multiple_iou`).
  Ground-truth boxes are [x0, y0, x1, y1] in pixels of the CAM (train.wsol.evaluate.boxes_in_crop).

Box convention of the project (written down here only): [x0, y0, x1, y1] in pixels, x0/y0 the first column
and row, x1/y1 one past the last — cv2.boundingRect's x + w above, CUB's x + w (train.wsol.box_formats), the
synthetic set's boxes (train.wsol.synth). The IoU nevertheless counts columns x0..x1 inclusively, as wsolevaluation
does: predicted and true boxes both carry the extra column and row, so a CAM covering exactly an object's
pixels gets IoU 1. Where a box meets the right or bottom edge, x1/y1 is the last pixel instead: CAM boxes are
clipped as above, and train.wsol.evaluate clips true boxes to the crop the same way (wsolevaluation leaves
resized true boxes unclipped, e.g. x1 = 224 on a 224-pixel map). ILSVRC XML boxes are used as given, as
wsolevaluation's metadata does.

Metrics (percent), accumulated batch by batch by `LocalizationMeter`:

* top-1 / top-5 classification accuracy;
* GT-known Loc (paper §4.1.1): the box of the largest component of the true class's CAM above a fixed
  fraction of its max (AlexNet-GAP: 0.20; the map divided by its max, negatives 0: `fraction_of_max`) has
  IoU >= 0.5 with some true box; Top-1 Loc: that and a correct top-1 class (the predicted class's CAM is
  then the true class's);
* MaxBoxAccV2 (wsolevaluation `BoxEvaluator` with multi_contour_eval and multi_iou_eval): for thresholds
  0, 0.001, ..., 0.999 of the min-max normalized CAM (`normalize_cams`) the boxes of *all* components, an
  image being correct at a threshold when any of them has IoU >= δ with any true box; per δ in {0.3, 0.5, 0.7}
  the accuracy at the best threshold; their mean.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import ndimage
from torchvision.ops import box_iou as _torchvision_box_iou

from dali_has import validate
from train.wsol.cam import fraction_of_max, normalize_cams

PAPER_CAM_THRESHOLD = 0.20  # of the CAM's max, for the box (paper §4.1.1, AlexNet-GAP)
LOC_IOU = 0.5  # a box with this IoU or more localizes its object (GT-known Loc, Top-1 Loc)
IOU_THRESHOLDS = (0.3, 0.5, 0.7)  # MaxBoxAccV2's δ levels
CAM_CURVE_INTERVAL = 0.001  # wsolevaluation's default --cam_curve_interval (config.py)
# 8-connectivity inside each map of a stack [L, H, W], none across maps: one label call for all thresholds.
_STACKED_8_CONNECTED = np.zeros((3, 3, 3), dtype=bool)
_STACKED_8_CONNECTED[1] = True
_STACKED_4_CONNECTED = np.zeros((3, 3, 3), dtype=bool)
_STACKED_4_CONNECTED[1] = ndimage.generate_binary_structure(2, 1)


def box_iou(boxes_a, boxes_b) -> torch.Tensor:
    """IoU matrix [A, B] of pixel boxes [x0, y0, x1, y1], areas counted inclusively as wsolevaluation does.

    Inclusive areas are torchvision's box_iou on boxes grown by one pixel to the right and bottom.
    """
    a, b = (torch.as_tensor(np.asarray(x, dtype=np.float64)).reshape(-1, 4) for x in (boxes_a, boxes_b))
    for name, boxes in (("boxes_a", a), ("boxes_b", b)):
        if ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
            raise ValueError(f"{name} has a box with x1 < x0 or y1 < y0: expected [x0, y0, x1, y1]")
    grow = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    return _torchvision_box_iou(a + grow, b + grow)


def quantize_cam(cam) -> np.ndarray:
    """uint8(cam * 255) of a [H, W] map in [0, 1], as wsolevaluation thresholds it."""
    cam = np.asarray(cam.detach().cpu() if isinstance(cam, torch.Tensor) else cam, dtype=np.float64)
    if cam.ndim != 2:
        raise ValueError(f"CAM has shape {cam.shape}; expected [H, W]")
    if not np.isfinite(cam).all() or cam.min() < 0 or cam.max() > 1:
        raise ValueError("CAM values must be finite and in [0, 1]; scale them with train.wsol.cam.fraction_of_max "
                         "or normalize_cams")
    return (cam * 255).astype(np.uint8)


def _threshold_levels(cam_u8: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    # int(t * max) in wsolevaluation; floor is the same for the non-negative values here.
    return np.floor(np.asarray(thresholds, dtype=np.float64) * int(cam_u8.max())).astype(np.int64)


def _extents(labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per label 1..max of a stack [L, H, W]: its level and its inclusive x0, y0, x1, y1."""
    objects = ndimage.find_objects(labels)  # one C pass; labels are consecutive, so no None entries
    e = np.array([(lv.start, xs.start, ys.start, xs.stop - 1, ys.stop - 1) for lv, ys, xs in objects],
                 dtype=np.int64).reshape(-1, 5)
    return e[:, 0], e[:, 1], e[:, 2], e[:, 3], e[:, 4]


def _component_boxes(cam_u8: np.ndarray, levels: np.ndarray, all_components: bool
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The boxes wsolevaluation's scoremap2bbox finds in `cam_u8 > level`, for every level at once: [M, 4]
    boxes and the index of each box's level. A level without foreground gets the box [0, 0, 0, 0].

    all_components: every contour cv2.findContours(RETR_TREE) returns — each component's outer border and
    the border of each hole — else per level only the component with most pixels, the last in scan order
    among equals: cv2 lists top-level contours in reverse scan order and max() keeps the first maximum.
    """
    height, width = cam_u8.shape
    masks = cam_u8[None] > levels[:, None, None]
    labels, count = ndimage.label(masks, structure=_STACKED_8_CONNECTED)
    owner, x0, y0, x1, y1 = _extents(labels)
    if not all_components and count:
        pixels = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        order = np.lexsort((-np.arange(count), -pixels, owner))  # labels are numbered in scan order
        keep = order[np.r_[0, np.flatnonzero(np.diff(owner[order])) + 1]]
        owner, x0, y0, x1, y1 = owner[keep], x0[keep], y0[keep], x1[keep], y1[keep]
    elif all_components:
        # A hole is a 4-connected background component off the image border (the dual of 8-connected
        # foreground). Its cv2 contour runs over the foreground pixels around it: its box grown by one.
        holes, _ = ndimage.label(~masks, structure=_STACKED_4_CONNECTED)
        h_owner, hx0, hy0, hx1, hy1 = _extents(holes)
        inner = (hx0 > 0) & (hy0 > 0) & (hx1 < width - 1) & (hy1 < height - 1)
        owner = np.concatenate([owner, h_owner[inner]])
        x0, y0 = np.concatenate([x0, hx0[inner] - 1]), np.concatenate([y0, hy0[inner] - 1])
        x1, y1 = np.concatenate([x1, hx1[inner] + 1]), np.concatenate([y1, hy1[inner] + 1])
    # cv2.boundingRect's x + w, i.e. one past the last pixel, clipped to the last pixel as scoremap2bbox does.
    boxes = np.stack([x0, y0, np.minimum(x1 + 1, width - 1), np.minimum(y1 + 1, height - 1)], axis=1)
    empty = np.setdiff1d(np.arange(len(levels)), owner)
    return (np.concatenate([boxes, np.zeros((len(empty), 4), dtype=boxes.dtype)]).astype(np.int64),
            np.concatenate([owner, empty]))


def boxes_from_cam(cam, threshold: float, all_components: bool = False) -> np.ndarray:
    """Boxes [k, 4] (int) around the components of `cam > threshold × max`; the largest only by default."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold={threshold}; expected a fraction of the CAM max in [0, 1]")
    cam_u8 = quantize_cam(cam)
    return _component_boxes(cam_u8, _threshold_levels(cam_u8, [threshold]), all_components)[0]


def best_iou_per_threshold(cam, gt_boxes, thresholds: Sequence[float], all_components: bool = True) -> np.ndarray:
    """For each CAM threshold, the best IoU between any box of the CAM and any true box; 0 where there is no true
    box (every object outside the evaluated crop: nothing to localize, a miss)."""
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if len(gt) == 0:
        return np.zeros(len(thresholds))
    cam_u8 = quantize_cam(cam)
    # Many thresholds share one integer level (1000 thresholds, at most 256 levels): label each level once.
    levels, inverse = np.unique(_threshold_levels(cam_u8, thresholds), return_inverse=True)
    boxes, owner = _component_boxes(cam_u8, levels, all_components)
    ious = box_iou(boxes, gt).amax(dim=1).numpy()
    best = np.zeros(len(levels))
    np.maximum.at(best, owner, ious)
    return best[inverse]


def _percent(correct, total: int):
    """correct * 100 / total in the order BoxEvaluator.compute computes it, so MaxBoxAcc is theirs to the bit
    (correct * (100 / total) can differ in the last bit, e.g. 37 of 41)."""
    return correct * 100.0 / total


class ClassificationMeter:
    """Top-1 / top-5 accuracy accumulated batch by batch; `compute()` gives percentages.

    Counts are plain sums, so the meters of several ranks, each fed its own shard, combine exactly:
    `meter.reduce(sum_over_ranks)` (e.g. `train.distributed.all_reduce_sum`) before `compute()`.
    """

    def __init__(self):
        self.count = 0
        self.top1 = 0
        self.top5 = 0

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        """Add a batch of logits [N, C] and labels [N]; returns whether each top-1 prediction is right."""
        logits, labels = logits.detach().cpu(), torch.as_tensor(labels).cpu().long()
        n = logits.shape[0]
        if logits.dim() != 2 or labels.shape != (n,):
            raise ValueError(f"batch shapes disagree: logits {tuple(logits.shape)}, labels {tuple(labels.shape)}; "
                             "expected [N, C] and [N]")
        topk = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 = (topk[:, 0] == labels).numpy()
        self.top1 += int(top1.sum())
        self.top5 += int((topk == labels[:, None]).any(dim=1).sum())
        self.count += n
        return top1

    def reduce(self, sum_all: Callable[[list[float]], list[float]]) -> None:
        """Replace every count by its sum over all meters, `sum_all` summing a list elementwise across ranks."""
        self._set_counts([round(v) for v in sum_all([float(v) for v in self._counts()])])

    def compute(self) -> dict:
        """Percentages: top1, top5, and the number of images."""
        if self.count == 0:
            raise ValueError("no images were added; call update() first")
        return {"count": self.count, "top1": _percent(self.top1, self.count), "top5": _percent(self.top5, self.count)}

    def _counts(self) -> list[int]:
        return [self.count, self.top1, self.top5]

    def _set_counts(self, counts: list[int]) -> None:
        self.count, self.top1, self.top5 = counts


class LocalizationMeter(ClassificationMeter):
    """Accumulates classification and localization results batch by batch; `compute()` gives percentages.

    Args:
        cam_threshold: fraction of the CAM max for GT-known / Top-1 Loc (AlexNet-GAP 0.20, GoogLeNet-GAP 0.30).
        iou_threshold: IoU needed for GT-known / Top-1 Loc.
        iou_thresholds, cam_curve_interval: MaxBoxAccV2's IoU levels and threshold sweep step.

    Use: `update(logits, labels, cams, true_boxes)` per batch (see its docstring for shapes), then `compute()`;
    `reduce` combines the meters of several ranks, as for `ClassificationMeter`.

    Raises:
        ValueError: an invalid setting (named); in update(), batch shapes that disagree; in compute(), no images.
    """

    def __init__(self, *, cam_threshold: float = PAPER_CAM_THRESHOLD, iou_threshold: float = LOC_IOU,
                 iou_thresholds: Sequence[float] = IOU_THRESHOLDS, cam_curve_interval: float = CAM_CURVE_INTERVAL):
        super().__init__()
        self.cam_threshold = validate.probability("cam_threshold", cam_threshold)
        self.iou_threshold = validate.number("iou_threshold", iou_threshold, low=0.0, high=1.0, low_open=True)
        self.iou_thresholds = tuple(validate.number("iou_thresholds", t, low=0.0, high=1.0, low_open=True)
                                    for t in validate.numbers("iou_thresholds", tuple(iou_thresholds)))
        cam_curve_interval = validate.number("cam_curve_interval", cam_curve_interval, low=0.0, high=1.0,
                                             low_open=True, high_open=True)
        self.cam_thresholds = np.arange(0, 1, cam_curve_interval)  # as wsolevaluation's cam_threshold_list
        self.gt_known = 0
        self.top1_loc = 0
        self.box_correct = np.zeros((len(self.iou_thresholds), len(self.cam_thresholds)), dtype=np.int64)

    def update(self, logits: torch.Tensor, labels: torch.Tensor, cams: torch.Tensor,
               gt_boxes: Sequence) -> np.ndarray:
        """Add a batch: logits [N, C], labels [N], the true classes' raw CAMs [N, H, W]
        (`class_activation_maps`) and, per image, its true boxes [k, 4] in CAM pixels.
        Returns whether each top-1 prediction is right."""
        cams = cams.detach().float().cpu()
        n = logits.shape[0]
        if cams.dim() != 3 or cams.shape[0] != n or len(gt_boxes) != n:
            raise ValueError(f"batch shapes disagree: logits {tuple(logits.shape)}, cams {tuple(cams.shape)}, "
                             f"{len(gt_boxes)} box lists; expected [N, C], [N, H, W] and N")
        if not (torch.isfinite(cams).all() and torch.isfinite(logits).all()):
            # A model of NaN weights scored a plausible top-1 (argmax of NaN is class 0) and 0 % localization.
            raise ValueError("the model's logits or CAMs hold NaN or infinite values: its weights or features "
                             "are not finite")
        top1 = super().update(logits, labels)
        of_max, min_max = fraction_of_max(cams), normalize_cams(cams)
        for i in range(n):
            gt = np.asarray(gt_boxes[i], dtype=np.float64).reshape(-1, 4)
            (largest_iou,) = best_iou_per_threshold(of_max[i], gt, [self.cam_threshold], all_components=False)
            hit = largest_iou >= self.iou_threshold
            self.gt_known += int(hit)
            self.top1_loc += int(hit and top1[i])
            best = best_iou_per_threshold(min_max[i], gt, self.cam_thresholds, all_components=True)
            self.box_correct += best[None, :] >= np.asarray(self.iou_thresholds)[:, None]
        return top1

    def compute(self) -> dict:
        """Percentages: top1, top5, gt_known_loc, top1_loc, maxboxacc_v2 (mean over IoU levels), and per IoU
        level the MaxBoxAcc and the CAM threshold that attains it."""
        metrics = super().compute()
        accuracy = _percent(self.box_correct, self.count)
        best = accuracy.argmax(axis=1)
        return {
            **metrics,
            "gt_known_loc": _percent(self.gt_known, self.count),
            "top1_loc": _percent(self.top1_loc, self.count),
            "maxboxacc_v2": float(accuracy.max(axis=1).mean()),
            "maxboxacc_by_iou": {f"{t:g}": float(accuracy[j, best[j]]) for j, t in enumerate(self.iou_thresholds)},
            "best_cam_threshold": {f"{t:g}": float(self.cam_thresholds[best[j]])
                                   for j, t in enumerate(self.iou_thresholds)},
        }

    def _counts(self) -> list[int]:
        return [*super()._counts(), self.gt_known, self.top1_loc, *self.box_correct.ravel().tolist()]

    def _set_counts(self, counts: list[int]) -> None:
        super()._set_counts(counts[:3])
        self.gt_known, self.top1_loc = counts[3:5]
        self.box_correct = np.array(counts[5:], dtype=np.int64).reshape(self.box_correct.shape)
