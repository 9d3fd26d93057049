"""Boxes from CAMs, IoU and the WSOL metrics (train.wsol.localization), on hand-computed cases."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from train.wsol.cam import fraction_of_max, normalize_cams
from train.wsol.localization import LocalizationMeter, best_iou_per_threshold, box_iou, boxes_from_cam


def _map(shape=(10, 12), **blobs):
    """A CAM with rectangular blobs: name=(value, y0, y1, x0, x1) with inclusive pixel ranges."""
    cam = np.zeros(shape)
    for value, y0, y1, x0, x1 in blobs.values():
        cam[y0:y1 + 1, x0:x1 + 1] = value
    return cam


def test_largest_component_is_boxed_one_past_its_last_pixel():
    cam = _map(a=(1.0, 1, 3, 1, 3), b=(0.8, 6, 7, 8, 9))  # 9 pixels vs 4
    assert boxes_from_cam(cam, 0.2).tolist() == [[1, 1, 4, 4]]
    assert sorted(boxes_from_cam(cam, 0.2, all_components=True).tolist()) == [[1, 1, 4, 4], [8, 6, 10, 8]]


def test_of_equally_large_components_the_last_in_scan_order_is_boxed_as_cv2_lists_it_first():
    # wsolevaluation's max(contours, key=cv2.contourArea) gives these boxes (checked with their code, cv2 4.14)
    assert boxes_from_cam(_map(a=(1.0, 1, 2, 1, 2), b=(1.0, 6, 7, 8, 9)), 0.5).tolist() == [[8, 6, 10, 8]]
    assert boxes_from_cam(_map(a=(1.0, 1, 2, 8, 9), b=(1.0, 6, 7, 1, 2)), 0.5).tolist() == [[1, 6, 3, 8]]


def test_threshold_is_a_fraction_of_the_max_and_strict():
    cam = _map(peak=(1.0, 0, 1, 0, 1), plateau=(0.5, 5, 8, 5, 8))  # the plateau is larger
    assert boxes_from_cam(cam, 0.2).tolist() == [[5, 5, 9, 9]]
    assert boxes_from_cam(cam, 0.6).tolist() == [[0, 0, 2, 2]]  # 0.5 < 0.6 of the max: plateau gone
    # relative to the map's own max: peak 0.5, plateau 0.25 behave as 1.0 and 0.5 did
    assert boxes_from_cam(cam / 2, 0.6).tolist() == [[0, 0, 2, 2]]
    assert boxes_from_cam(cam / 2, 0.4).tolist() == [[5, 5, 9, 9]]
    # strictly above: uint8(0.2 * 255) = 51 = int(0.2 * 255), so a pixel at exactly 0.2 is background
    edge = _map(peak=(1.0, 0, 0, 0, 0), rim=(0.2, 5, 9, 5, 11))
    assert boxes_from_cam(edge, 0.2).tolist() == [[0, 0, 1, 1]]


def test_components_are_8_connected_and_boxes_clip_to_the_last_pixel():
    cam = np.zeros((6, 6))
    cam[1, 1] = cam[2, 2] = cam[3, 3] = 1.0  # a diagonal: one component
    cam[5, 5] = 0.9  # corner pixel: x0 + w = 6 is clipped to 5
    assert sorted(boxes_from_cam(cam, 0.5, all_components=True).tolist()) == [[1, 1, 4, 4], [5, 5, 5, 5]]


def test_no_foreground_gives_the_empty_box():
    assert boxes_from_cam(np.zeros((5, 5)), 0.2).tolist() == [[0, 0, 0, 0]]
    assert boxes_from_cam(np.zeros((5, 5)), 0.2, all_components=True).tolist() == [[0, 0, 0, 0]]


def test_all_components_include_hole_borders_as_cv2_retr_tree_does():
    cam = _map(ring=(1.0, 1, 5, 1, 5))
    cam[3, 3] = 0.0  # a one-pixel hole; its border is the 3x3 ring of pixels around it
    assert sorted(boxes_from_cam(cam, 0.5, all_components=True).tolist()) == [[1, 1, 6, 6], [2, 2, 5, 5]]
    # a gap open to the image border is no hole
    open_cam = _map(bar=(1.0, 1, 5, 0, 5))
    open_cam[3, 0:3] = 0.0
    assert boxes_from_cam(open_cam, 0.5, all_components=True).tolist() == [[0, 1, 6, 6]]


def test_box_iou_counts_pixels_inclusively():
    iou = box_iou([[0, 0, 9, 9], [0, 0, 1, 1]], [[0, 0, 4, 9], [1, 1, 2, 2], [20, 20, 30, 30]])
    # 10x10 vs 5x10: 50/100; 2x2 inside 5x10: 4/50; 2x2 vs 2x2 sharing one pixel: 1/7; disjoint: 0
    torch.testing.assert_close(iou, torch.tensor([[0.5, 4 / 100, 0.0], [4 / 50, 1 / 7, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="x1 < x0"):
        box_iou([[5, 0, 4, 3]], [[0, 0, 1, 1]])


def _oracle_best_iou(cam, gt, thresholds):
    """Per threshold, label one 2D map at a time (scipy), boxes of components and holes, best IoU."""
    u8 = (np.asarray(cam, dtype=np.float64) * 255).astype(np.uint8)
    h, w = u8.shape
    out = []
    for t in thresholds:
        mask = u8 > int(t * u8.max())
        boxes = []
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
        for ys, xs in ndimage.find_objects(labels):
            boxes.append([xs.start, ys.start, min(xs.stop, w - 1), min(ys.stop, h - 1)])
        holes, _ = ndimage.label(~mask)
        for ys, xs in ndimage.find_objects(holes):
            if ys.start > 0 and xs.start > 0 and ys.stop < h and xs.stop < w:
                boxes.append([xs.start - 1, ys.start - 1, min(xs.stop + 1, w - 1), min(ys.stop + 1, h - 1)])
        out.append(float(box_iou(boxes or [[0, 0, 0, 0]], gt).max()))
    return np.array(out)


def test_threshold_sweep_matches_a_one_map_at_a_time_oracle_on_random_maps():
    rng = np.random.default_rng(0)
    thresholds = np.arange(0, 1, 0.01)
    for _ in range(6):
        low = torch.randn(1, 1, 5, 5)
        cam = torch.nn.functional.interpolate(low, size=(24, 20), mode="bilinear")[0, 0].numpy()
        cam = (cam - cam.min()) / (cam.max() - cam.min())
        gt = [[*rng.integers(0, 8, 2), *rng.integers(10, 19, 2)]]
        np.testing.assert_allclose(best_iou_per_threshold(cam, gt, thresholds), _oracle_best_iou(cam, gt, thresholds))


def _four_images():
    plateau = _map((10, 10), r1=(0.4, 2, 7, 2, 7), r2=(1.0, 4, 5, 4, 5))
    two_blobs = _map((10, 10), a=(1.0, 0, 4, 0, 4), b=(1.0, 7, 8, 7, 8))
    square = _map((10, 10), a=(1.0, 0, 3, 0, 3))
    cams = torch.tensor(np.stack([plateau, plateau, two_blobs, square]))
    gt = [[[2, 2, 8, 8]],  # the plateau's box: IoU 1 below threshold 0.4, then 9/49 (peak only)
          [[4, 4, 6, 6]],  # the peak's box: 9/49 below 0.4, then IoU 1
          [[7, 7, 9, 9]],  # the smaller blob: found only when all components count
          [[0, 0, 11, 4]]]  # 25/60 = 0.42 at every threshold: counts for IoU 0.3 only
    return cams, gt


def test_meter_gt_known_top1_loc_and_classification():
    cams, gt = _four_images()
    labels = torch.tensor([0, 1, 2, 0])
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0],  # label 0 first
                           [4, 3, 5, 2, 1, 0],  # label 1 third
                           [0, 1, 5, 2, 3, 4],  # label 2 first
                           [0, 1, 2, 3, 4, 5]])  # label 0 sixth
    meter = LocalizationMeter()
    meter.update(logits[:2], labels[:2], cams[:2], gt[:2])  # fed in two batches
    meter.update(logits[2:], labels[2:], cams[2:], gt[2:])
    r = meter.compute()
    assert r["count"] == 4
    assert r["top1"] == 50.0  # images 0 and 2
    assert r["top5"] == 75.0
    # GT-known at 0.2: only image 0 (the plateau and peak form one component matching its box)
    assert r["gt_known_loc"] == 25.0
    assert r["top1_loc"] == 25.0
    meter2 = LocalizationMeter()
    meter2.update(torch.tensor([[0.0, 5, 0, 0, 0, 0]]), labels[:1], cams[:1], gt[:1])  # localized, misclassified
    assert meter2.compute()["gt_known_loc"] == 100.0 and meter2.compute()["top1_loc"] == 0.0


def test_gt_known_loc_thresholds_at_a_fraction_of_the_max_and_maxboxacc_on_the_min_max_scale():
    # A raw CAM: -1 background, 0 on a ring, 1 on the core. The papers' rule (20 % of the max; the CAM code
    # divides by the max, negatives clipped) boxes the core; min-max normalized, 0.2 is min + 0.2 (max - min) =
    # -0.6, which boxes the ring as well (what GT-known Loc computed before, 5 to 8 points apart on demo runs).
    cam = np.full((10, 10), -1.0)
    cam[2:8, 2:8] = 0.0
    cam[4:6, 4:6] = 1.0
    core = [[4, 4, 6, 6]]
    assert boxes_from_cam(fraction_of_max(torch.tensor(cam)[None])[0], 0.2).tolist() == core
    assert boxes_from_cam(normalize_cams(torch.tensor(cam)[None])[0], 0.2).tolist() == [[2, 2, 8, 8]]
    meter = LocalizationMeter()
    meter.update(torch.tensor([[1.0, 0.0]]), torch.zeros(1, dtype=torch.long), torch.tensor(cam)[None], [core])
    r = meter.compute()
    assert r["gt_known_loc"] == 100.0
    # MaxBoxAccV2 on the min-max scale: the ring sits at 0.5 there, so only thresholds near 0.5 box the core (on
    # the fraction-of-max scale the ring is 0, and 0.0 would be the first to)
    assert r["maxboxacc_by_iou"]["0.5"] == 100.0 and 0.49 <= r["best_cam_threshold"]["0.5"] <= 0.5
    assert fraction_of_max(torch.full((1, 2, 2), -3.0)).eq(0).all()  # no positive max: nothing is foreground


def test_meter_maxboxacc_v2_best_threshold_per_iou_then_mean():
    cams, gt = _four_images()
    meter = LocalizationMeter()
    meter.update(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), cams, gt)
    r = meter.compute()
    # IoU 0.3: images 0|1 (below|above 0.4), 2 and 3 at every threshold -> 3/4; IoU 0.5, 0.7: image 3 drops out
    assert r["maxboxacc_by_iou"] == {"0.3": 75.0, "0.5": 50.0, "0.7": 50.0}
    assert r["maxboxacc_v2"] == pytest.approx((75 + 50 + 50) / 3)
    assert r["best_cam_threshold"]["0.5"] == 0.0
    # at one threshold per IoU level: image 0 counts below 0.4, image 1 from 0.4 on
    at = dict(zip(np.round(meter.cam_thresholds, 3), meter.box_correct[1]))
    assert at[0.399] == 2 and at[0.4] == 2 and at[0.0] == 2
    assert meter.box_correct.shape == (3, 1000)


def test_meter_rejects_bad_input():
    meter, BOX = LocalizationMeter(), [[0, 0, 1, 1]]
    # A model of NaN weights scored a plausible top-1 (argmax of NaN logits is class 0).
    with pytest.raises(ValueError, match="NaN or infinite"):
        meter.update(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), torch.full((1, 4, 4), np.nan), [BOX])
    with pytest.raises(ValueError, match="NaN or infinite"):
        meter.update(torch.full((1, 2), np.nan), torch.zeros(1, dtype=torch.long), torch.zeros(1, 4, 4), [BOX])
    with pytest.raises(ValueError, match="batch shapes disagree"):
        meter.update(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(1, 4, 4), [[[0, 0, 1, 1]]])
    # No true box (every object outside the evaluated crop): nothing to localize, a miss at every threshold.
    meter.update(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), torch.ones(1, 4, 4), [[]])
    assert (meter.gt_known, meter.box_correct.sum()) == (0, 0) and meter.count == 1
    with pytest.raises(ValueError, match="cam_threshold=1.5"):
        LocalizationMeter(cam_threshold=1.5)
    with pytest.raises(ValueError, match="no images"):
        LocalizationMeter().compute()
