"""1-D CAM segments, temporal IoU and THUMOS-style mAP against hand-computed cases; the action model's CAM."""
import numpy as np
import pytest
import torch

from train.actions.localization import (
    Segment,
    average_precision,
    cam_segments,
    mean_average_precision,
    predict_segments,
    temporal_iou,
)
from train.actions.model import ActionClassifier


def test_cam_segments_are_runs_above_half_the_maximum():
    cam = np.array([0, 1, 3, 4, 1, 2.0, 2.5, 3, 0, 3])
    # max 4 -> foreground > 2: [2, 4), [6, 8), [9, 10); exactly 2.0 is background.
    assert cam_segments(cam) == [(2, 4, 3.5 / 4), (6, 8, 2.75 / 4), (9, 10, 3 / 4)]
    assert cam_segments(cam, threshold=0.0) == [(1, 8, np.mean(cam[1:8]) / 4), (9, 10, 3 / 4)]
    assert cam_segments(np.array([-1.0, -0.5, 0.0])) == []  # no positive evidence, no foreground


def test_temporal_iou():
    ious = temporal_iou((0, 10), [(5, 15), (10, 20), (2, 4), (0, 10), (-5, 20)])
    np.testing.assert_allclose(ious, [5 / 15, 0, 2 / 10, 1, 10 / 25])
    assert temporal_iou((0, 1), []).shape == (0,)


def test_average_precision_matches_each_ground_truth_once():
    gt = [Segment(0, 0, 0, 10), Segment(1, 0, 20, 30)]
    preds = [Segment(0, 0, 0, 8, 0.9),   # IoU 0.8: true positive
             Segment(0, 0, 1, 9, 0.8),   # IoU 0.8 with a ground truth already matched: false positive
             Segment(1, 0, 40, 50, 0.7),  # no overlap: false positive
             Segment(1, 0, 22, 30, 0.6)]  # IoU 0.8: true positive
    # precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1 -> interpolated 1 and 1/2 -> AP = 0.5 + 0.25
    assert average_precision(preds, gt, 0.5) == pytest.approx(0.75)
    assert average_precision(preds[::-1], gt, 0.5) == pytest.approx(0.75)  # ranked by score, not given order
    assert average_precision(preds, gt, 0.9) == 0.0
    assert average_precision([], gt, 0.5) == 0.0


def test_a_prediction_falls_back_to_the_next_best_unmatched_ground_truth():
    gt = [Segment(0, 0, 0, 10), Segment(0, 0, 8, 20)]
    preds = [Segment(0, 0, 0, 10, 0.9), Segment(0, 0, 2, 12, 0.8)]  # 2nd: IoU 8/12 with the taken one, 4/18 else
    assert average_precision(preds, gt, 0.2) == pytest.approx(1.0)
    assert average_precision(preds, gt, 0.5) == pytest.approx(0.5)


def test_mean_average_precision_averages_over_classes_with_ground_truth():
    gt = [Segment(0, 0, 0, 10), Segment(1, 1, 0, 10)]
    preds = [Segment(0, 0, 0, 10, 0.9),  # class 0: AP 1
             Segment(1, 2, 0, 10, 0.9)]  # class 2 has no ground truth: ignored; class 1 unpredicted: AP 0
    assert mean_average_precision(preds, gt, (0.1, 0.5)) == {0.1: 0.5, 0.5: 0.5}


def test_predictions_map_positions_back_to_the_video_and_score_by_class_and_cam():
    cams = np.array([[0, 2, 2, 0], [5, 0, 0, 0]], dtype=float)
    probs = np.array([0.95, 0.05])  # class 1 below 0.1: no prediction for it
    assert predict_segments(3, cams, probs, frames=8) == [Segment(3, 0, 2.0, 6.0, 0.95)]
    both = predict_segments(3, cams, np.array([0.5, 0.5]), frames=8)
    assert [(s.label, s.start, s.end) for s in both] == [(0, 2.0, 6.0), (1, 0.0, 2.0)]


def test_action_model_shapes_and_cam_agree_with_logits_on_one_step():
    torch.manual_seed(0)
    model = ActionClassifier(feature_dim=6, num_classes=3)
    assert model.features[0].out_channels == 500 and model.features[2].out_channels == 500
    x = torch.randn(2, 7, 6)
    assert model(x).shape == (2, 3) and model.cam(x).shape == (2, 3, 7)
    one = x[:, :1]  # with one time step, max pooling is the identity: logits = CAM + bias
    torch.testing.assert_close(model(one), model.cam(one)[..., 0] + model.classifier.bias)
    with pytest.raises(ValueError, match="num_classes=0"):
        ActionClassifier(6, 0)
