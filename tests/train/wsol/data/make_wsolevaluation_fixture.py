"""Regenerate wsolevaluation_parity.npz: random CAMs and what clovaai/wsolevaluation computes from them.

This script runs *their* code, so it needs a checkout of https://github.com/clovaai/wsolevaluation (their
evaluation.py, inference.py and util.py; nothing of it is copied here) and an environment with numpy and
opencv-python-headless. It does not run in this project's environment and no test calls it; the test
(tests/train/test_wsolevaluation_parity.py) only reads the .npz it writes::

    git clone https://github.com/clovaai/wsolevaluation /tmp/wsolevaluation
    python3 -m venv /tmp/wsolenv && /tmp/wsolenv/bin/pip install numpy opencv-python-headless
    /tmp/wsolenv/bin/python tests/train/wsol/data/make_wsolevaluation_fixture.py /tmp/wsolevaluation

The committed file was made from their commit 96f4b88679af41f005824661f47e6fe3628af2aa with numpy 2.4.6 and
opencv-python-headless 4.14.0 (5.0.0 gives the same arrays); the output is byte-for-byte reproducible.

Their modules import torch, munch and their data loaders at the top; the functions used here need none of
them, so those imports are satisfied by empty stand-ins, and `np.float` (gone from numpy >= 1.24) is aliased to
float, which is what it was. Their BoxEvaluator reads true boxes through data_loaders; the stand-in serves the
fixture's boxes with image size 224×224, so its resize to 224×224 leaves them as they are (CAM pixels).

What the .npz holds (plain arrays; load with allow_pickle=False). Maps are ragged, so they are concatenated:

  raw              uint16 [P]      the maps' raw values, map i = raw[offsets[i]:offsets[i+1]].reshape(shapes[i])
  shapes, offsets  int64 [N, 2], [N + 1]
  u8               uint8 [P]       their quantized maps: uint8(normalize_scoremap(float64(raw)) * 255)
  gt_boxes, gt_image   int64 [G, 4], [G]   true boxes [x0, y0, x1, y1] in map pixels and the map of each
  thresholds       float64 [T]     CAM thresholds of the per-map boxes below
  single_boxes     int64 [N, T, 4] compute_bboxes_from_scoremaps(multi_contour_eval=False) per threshold
  multi_boxes      int64 [K, 4]    compute_bboxes_from_scoremaps(multi_contour_eval=True): every contour's box,
  multi_map, multi_thr  int64 [K]  with the map and threshold index it belongs to,
  multi_area       float64 [K]     cv2.contourArea of that contour (the single mode takes the first maximum),
  multi_hole       bool [K]        whether the contour is a hole border (odd depth in the RETR_TREE hierarchy)
  iou_levels       int64 [3]       BoxEvaluator's iou_threshold_list (percent)
  cam_curve_interval  float64 []   BoxEvaluator's threshold step; thresholds = np.arange(0, 1, step)
  num_correct      int64 [3, S]    BoxEvaluator(multi_contour_eval=True).num_correct over all maps
  correct_bits     uint8 [N, 3, ceil(S/8)]  the same for each map alone (np.packbits along thresholds)
  max_box_acc      float64 [3]     BoxEvaluator.compute(); max_box_acc_v2 float64 []: np.average of it
  resize_in, resize_from, resize_to, resize_out   resize_bbox(box, image_size, resize_size) cases
  iou_a, iou_b, iou_out            calculate_multiple_iou(iou_a, iou_b)
  cv2_version, wsolevaluation_commit, seed   provenance
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
IOU_LEVELS = (30, 50, 70)
CAM_CURVE_INTERVAL = 0.001
SIZES = ((16, 16), (28, 28), (23, 37), (37, 23), (14, 20), (20, 14), (9, 11))  # (H, W)
RAW_MAX = 60000  # raw maps are integers, so float64 maps and their normalization are exact to reproduce


def load_theirs(checkout: Path):
    """Import their evaluation and inference modules with stand-ins for the heavy imports they do not use here."""
    if not hasattr(np, "float"):
        np.float = float  # their util.check_scoremap_validity compares dtypes with np.float
    for name in ("torch", "torch.utils", "torch.utils.data", "config", "data_loaders"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["torch.utils.data"].Dataset = object
    sys.modules["torch"].utils = sys.modules["torch.utils"]
    sys.modules["torch.utils"].data = sys.modules["torch.utils.data"]
    sys.modules["config"].str2bool = None
    loaders = sys.modules["data_loaders"]
    loaders.configure_metadata = loaders.get_mask_paths = None
    loaders.get_image_ids = lambda metadata: metadata["image_ids"]
    loaders.get_bounding_boxes = lambda metadata: metadata["boxes"]
    loaders.get_image_sizes = lambda metadata: {i: (224, 224) for i in metadata["image_ids"]}
    sys.path.insert(0, str(checkout))
    import evaluation
    import inference
    return evaluation, inference


def _grid(h, w):
    return np.mgrid[0:h, 0:w].astype(np.float64)


def _gauss(h, w, cy, cx, sy, sx):
    y, x = _grid(h, w)
    return np.exp(-0.5 * (((y - cy) / sy) ** 2 + ((x - cx) / sx) ** 2))


def _to_raw(m):
    m = m - m.min()
    return np.round(m / m.max() * RAW_MAX).astype(np.uint16) if m.max() > 0 else np.zeros(m.shape, np.uint16)


def make_maps(rng: np.random.Generator) -> list[np.ndarray]:
    """Raw integer maps: smooth blobs, several components, rings (holes), plateaus (ties), noise, thin shapes,
    an all-zero map, single hot pixels, and a 64×64 map of the synthetic demo's size."""
    maps = []
    for i in range(14):  # sums of 1-4 Gaussian blobs, some of them far apart (several components)
        h, w = SIZES[i % len(SIZES)]
        m = np.zeros((h, w))
        for _ in range(rng.integers(1, 5)):
            m += rng.uniform(0.3, 1.0) * _gauss(h, w, rng.uniform(-1, h), rng.uniform(-1, w),
                                                rng.uniform(0.8, h / 3), rng.uniform(0.8, w / 3))
        maps.append(_to_raw(m))
    for i in range(6):  # rings: holes at high thresholds; some touch the border (then the gap is no hole)
        h, w = SIZES[(i + 2) % len(SIZES)]
        y, x = _grid(h, w)
        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
        r = np.hypot((y - cy) / rng.uniform(0.7, 1.3), x - cx)
        m = np.exp(-0.5 * ((r - rng.uniform(2, min(h, w) / 2)) / rng.uniform(0.7, 2.0)) ** 2)
        if i % 2:  # a second component inside the hole
            m += 0.8 * _gauss(h, w, cy, cx, 0.7, 0.7)
        maps.append(_to_raw(m))
    for i in range(5):  # plateaus: few distinct values, so many ties between levels and equal-sized parts
        h, w = SIZES[(i + 4) % len(SIZES)]
        coarse = rng.integers(0, 4, size=(max(2, h // 4), max(2, w // 4)))
        m = np.kron(coarse, np.ones((4, 4)))[:h, :w]
        m = np.pad(m, ((0, h - m.shape[0]), (0, w - m.shape[1])))
        maps.append((m * 20000).astype(np.uint16))
    for i in range(4):  # noise: many tiny components and holes, 8- vs 4-connectivity matters
        h, w = SIZES[(i + 1) % len(SIZES)]
        maps.append(rng.integers(0, RAW_MAX, size=(h, w)).astype(np.uint16))
    for i in range(3):  # exact multiples of 1/255: quantization at the edge of each uint8 level
        h, w = SIZES[(i + 3) % len(SIZES)]
        m = rng.integers(0, 256, size=(h, w))
        m[0, 0], m[-1, -1] = 0, 255
        maps.append(m.astype(np.uint16))
    for i in range(4):  # thin shapes: a long line (many pixels, zero contour area) next to a compact blob
        h, w = (28, 28) if i < 2 else (23, 37)
        m = np.zeros((h, w))
        row = int(rng.integers(2, h // 3))
        m[row, 1:w - 1] = 0.9 if i % 2 else 1.0
        blob_y, blob_x = int(rng.integers(h // 2, h - 5)), int(rng.integers(2, w - 7))
        m[blob_y:blob_y + 3 + i % 2, blob_x:blob_x + 3 + i % 2] = 1.0 if i % 2 else 0.9
        if i >= 2:  # a diagonal (8-connected, one component) and an L shape
            for k in range(h - h // 2 - 1):
                m[h // 2 + k, k] = 0.95
            m[h - 3, w - 10:w - 2] = m[h - 10:h - 2, w - 3] = 0.7
        maps.append(_to_raw(m + 0.05 * _gauss(h, w, h / 2, w / 2, h, w)))
    maps.append(np.zeros((16, 16), np.uint16))  # all zero: normalize_scoremap returns zeros
    for y, x in ((7, 9), (0, 0), (13, 19)):  # a single hot pixel, inside, in a corner, in the far corner
        m = np.zeros((14, 20), np.uint16)
        m[y, x] = 1000
        maps.append(m)
    m = np.zeros((64, 64))
    for _ in range(3):
        m += _gauss(64, 64, rng.uniform(8, 56), rng.uniform(8, 56), rng.uniform(3, 12), rng.uniform(3, 12))
    maps.append(_to_raw(m))
    return maps


def make_gt_boxes(rng: np.random.Generator, raw: np.ndarray) -> np.ndarray:
    """1-3 true boxes: the first around the map's strong part (so IoUs >= 0.5 occur), the rest random."""
    h, w = raw.shape
    ys, xs = np.nonzero(raw >= np.quantile(raw, 0.7)) if raw.max() > 0 else (np.array([h // 2]), np.array([w // 2]))
    boxes = [[xs.min(), ys.min(), xs.max(), ys.max()]]
    boxes[0] = [int(np.clip(v + rng.integers(-2, 3), 0, limit)) for v, limit in zip(boxes[0], (w, h, w, h))]
    boxes += [_random_box(rng, w - 1, h - 1) for _ in range(rng.integers(0, 3))]
    b = np.array(boxes, dtype=np.int64)
    b[:, 2] = np.clip(np.maximum(b[:, 2], b[:, 0]), 0, w - 1)
    b[:, 3] = np.clip(np.maximum(b[:, 3], b[:, 1]), 0, h - 1)
    return b


def _random_box(rng: np.random.Generator, w: int, h: int) -> list[int]:
    """[x0, y0, x1, y1] with 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h."""
    (x0, x1), (y0, y1) = sorted(rng.integers(0, w + 1, 2)), sorted(rng.integers(0, h + 1, 2))
    return [int(x0), int(y0), int(x1), int(y1)]


class ContourRecorder:
    """Stands in for their module's cv2: the same functions, and it keeps what findContours returned so each
    returned box can be paired with its contour's area and hole flag (their boxes are in contour order)."""

    def __init__(self, cv2):
        self._cv2 = cv2
        self.calls = []

    def __getattr__(self, name):
        return getattr(self._cv2, name)

    def findContours(self, *args, **kwargs):
        out = self._cv2.findContours(*args, **kwargs)
        contours, hierarchy = out[-2], out[-1]
        holes = []
        for i in range(len(contours)):
            depth, parent = 0, hierarchy[0][i][3]
            while parent >= 0:
                depth, parent = depth + 1, hierarchy[0][parent][3]
            holes.append(depth % 2 == 1)
        self.calls.append(([self._cv2.contourArea(c) for c in contours], holes))
        return out


def _git_head(checkout: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:  # no git here
        return "unknown"
    return out.stdout.strip() or "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkout", type=Path, help="folder of a clovaai/wsolevaluation checkout")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("wsolevaluation_parity.npz"))
    parser.add_argument("--seed", type=int, default=20200617)
    parser.add_argument("--commit", help="their commit, when the checkout is no git work tree")
    args = parser.parse_args(argv)
    if not (args.checkout / "evaluation.py").is_file():
        parser.error(f"{args.checkout}: no evaluation.py; expected a clovaai/wsolevaluation checkout")
    evaluation, inference = load_theirs(args.checkout)
    import cv2

    commit = args.commit or _git_head(args.checkout)
    rng = np.random.default_rng(args.seed)
    maps = make_maps(rng)
    gts = [make_gt_boxes(rng, raw) for raw in maps]
    cams = [inference.normalize_scoremap(raw.astype(np.float64)) for raw in maps]

    recorder = ContourRecorder(cv2)
    evaluation.cv2 = recorder
    single, multi, multi_map, multi_thr, multi_area, multi_hole = [], [], [], [], [], []
    for i, cam in enumerate(cams):
        boxes, _ = evaluation.compute_bboxes_from_scoremaps(cam, THRESHOLDS, multi_contour_eval=False)
        single.append(np.concatenate(boxes))
        recorder.calls.clear()
        boxes, counts = evaluation.compute_bboxes_from_scoremaps(cam, THRESHOLDS, multi_contour_eval=True)
        for t, (b, n) in enumerate(zip(boxes, counts)):
            areas, holes = recorder.calls[t]
            if not areas:  # no contour: their placeholder box [0, 0, 0, 0]
                areas, holes = [0.0], [False]
            assert len(b) == n == len(areas)
            multi.append(b)
            multi_map += [i] * n
            multi_thr += [t] * n
            multi_area += areas
            multi_hole += holes
    evaluation.cv2 = cv2

    thresholds = list(np.arange(0, 1, CAM_CURVE_INTERVAL))

    def box_evaluator(indices):
        ids = [str(i) for i in indices]
        ev = evaluation.BoxEvaluator(
            metadata={"image_ids": ids, "boxes": {str(i): [tuple(b) for b in gts[i].tolist()] for i in indices}},
            dataset_name="CUB", split="test", cam_threshold_list=thresholds, iou_threshold_list=list(IOU_LEVELS),
            mask_root="", multi_contour_eval=True)
        for i in indices:
            ev.accumulate(cams[i], str(i))
        return ev

    everything = box_evaluator(range(len(cams)))
    max_box_acc = np.array(everything.compute())
    per_map = [box_evaluator([i]).num_correct for i in range(len(cams))]
    correct_bits = np.packbits(np.array([[m[level] for level in IOU_LEVELS] for m in per_map]).astype(bool),
                               axis=-1)

    resize_from = rng.integers(20, 600, size=(30, 2))
    resize_to = np.where(rng.random((30, 1)) < 0.5, 224, rng.integers(7, 300, size=(30, 2)))
    resize_in = np.array([_random_box(rng, w, h) for w, h in resize_from])
    resize_out = np.array([evaluation.resize_bbox(b, s, r) for b, s, r in zip(resize_in, resize_from, resize_to)])
    iou_a, iou_b = (np.array([_random_box(rng, 40, 40) for _ in range(n)]) for n in (24, 20))
    iou_out = evaluation.calculate_multiple_iou(iou_a, iou_b)

    shapes = np.array([m.shape for m in maps], dtype=np.int64)
    np.savez_compressed(
        args.out,
        raw=np.concatenate([m.ravel() for m in maps]),
        shapes=shapes, offsets=np.r_[0, np.cumsum(shapes.prod(axis=1))].astype(np.int64),
        u8=np.concatenate([(cam * 255).astype(np.uint8).ravel() for cam in cams]),
        gt_boxes=np.concatenate(gts), gt_image=np.repeat(np.arange(len(gts)), [len(g) for g in gts]),
        thresholds=np.array(THRESHOLDS), single_boxes=np.stack(single).reshape(len(cams), len(THRESHOLDS), 4),
        multi_boxes=np.concatenate(multi).astype(np.int64), multi_map=np.array(multi_map, dtype=np.int64),
        multi_thr=np.array(multi_thr, dtype=np.int64), multi_area=np.array(multi_area, dtype=np.float64),
        multi_hole=np.array(multi_hole, dtype=bool),
        iou_levels=np.array(IOU_LEVELS, dtype=np.int64), cam_curve_interval=np.float64(CAM_CURVE_INTERVAL),
        num_correct=np.array([everything.num_correct[level] for level in IOU_LEVELS]).astype(np.int64),
        correct_bits=correct_bits, max_box_acc=max_box_acc, max_box_acc_v2=np.float64(np.average(max_box_acc)),
        resize_in=resize_in.astype(np.int64), resize_from=resize_from.astype(np.int64),
        resize_to=resize_to.astype(np.int64), resize_out=resize_out.astype(np.int64),
        iou_a=iou_a.astype(np.int64), iou_b=iou_b.astype(np.int64), iou_out=iou_out,
        cv2_version=np.array(cv2.__version__), wsolevaluation_commit=np.array(commit), seed=np.int64(args.seed))
    print(f"{args.out}: {len(maps)} maps, {len(multi_map)} contour boxes, {args.out.stat().st_size} bytes; "
          f"MaxBoxAcc {max_box_acc.tolist()} (V2 {np.average(max_box_acc):.4f}); cv2 {cv2.__version__}, "
          f"wsolevaluation {commit}")


if __name__ == "__main__":
    main()
