"""CAM(c) = Σ_k W[c, k] F_k, upsampled and min-max normalized (train.wsol.cam)."""
import pytest
import torch
import torch.nn.functional as F

from train.models import build_model
from train.wsol.cam import class_activation_maps, normalize_cams


def test_raw_cam_is_the_weighted_sum_of_feature_maps():
    torch.manual_seed(0)
    features, weight = torch.randn(3, 5, 4, 6), torch.randn(7, 5)
    classes = torch.tensor([6, 0, 3])
    cams = class_activation_maps(features, weight, classes)
    expected = torch.einsum("nk,nkhw->nhw", weight[classes], features)
    assert cams.shape == (3, 4, 6)
    torch.testing.assert_close(cams, expected)
    # and per image, by hand, for one class
    torch.testing.assert_close(cams[1], sum(weight[0, k] * features[1, k] for k in range(5)))


def test_cam_is_upsampled_bilinearly_then_normalized_per_image():
    torch.manual_seed(1)
    features, weight = torch.randn(2, 3, 4, 4), torch.randn(2, 3)
    classes = torch.tensor([1, 0])
    cams = normalize_cams(class_activation_maps(features, weight, classes, size=(16, 12)))
    raw = F.interpolate(torch.einsum("nk,nkhw->nhw", weight[classes], features)[:, None], size=(16, 12),
                        mode="bilinear", align_corners=False)[:, 0]
    lo = raw.amin(dim=(1, 2), keepdim=True)
    hi = raw.amax(dim=(1, 2), keepdim=True)
    assert cams.shape == (2, 16, 12)
    torch.testing.assert_close(cams, (raw - lo) / (hi - lo))
    assert cams.amin(dim=(1, 2)).tolist() == [0.0, 0.0] and cams.amax(dim=(1, 2)).tolist() == [1.0, 1.0]


def test_constant_and_nan_maps_normalize_to_zeros_as_wsolevaluation():
    maps = torch.stack([torch.full((3, 3), 2.5), torch.tensor([[0.0, float("nan"), 1], [0, 0, 0], [0, 0, 0]]),
                        torch.tensor([[1.0, 3, 5], [1, 1, 1], [1, 1, 1]])])
    out = normalize_cams(maps)
    assert torch.equal(out[0], torch.zeros(3, 3)) and torch.equal(out[1], torch.zeros(3, 3))
    torch.testing.assert_close(out[2], (maps[2] - 1) / 4)


def test_cam_works_on_half_precision_features_and_checks_shapes():
    features = torch.randn(2, 4, 3, 3).half()
    assert class_activation_maps(features, torch.randn(5, 4), [0, 1]).dtype == torch.float32
    with pytest.raises(ValueError, match=r"expected \[classes, 4\]"):
        class_activation_maps(features, torch.randn(5, 3), [0, 1])
    with pytest.raises(ValueError, match="2 images"):
        class_activation_maps(features, torch.randn(5, 4), [0, 1, 2])


def test_model_cam_matches_the_class_score_under_gap():
    # Under GAP, the mean of the raw CAM is the class logit minus the bias: the CAM explains the score.
    torch.manual_seed(2)
    model = build_model("alexnet_gap", 4, stem="small", width=0.125).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features, logits = model.features_and_logits(x)
        raw = class_activation_maps(features, model.classifier_weight, torch.tensor([3, 1]))
    expected = logits[[0, 1], [3, 1]] - model.classifier.bias[[3, 1]]
    torch.testing.assert_close(raw.mean(dim=(1, 2)), expected, rtol=1e-4, atol=1e-5)
