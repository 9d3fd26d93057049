"""Model shapes and options (train.models)."""
import pytest
import torch
from torch import nn

from train.models import AlexNetGAP, build_model, model_options


def _convs(model):
    return [m for m in model.body if isinstance(m, nn.Conv2d)]


def test_alexnet_gap_layers_follow_the_paper_at_224():
    model = build_model("alexnet_gap", 1000)
    convs = _convs(model)
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256, 512, 512]
    assert [c.kernel_size[0] for c in convs] == [11, 5, 3, 3, 3, 3, 3]
    assert convs[0].stride == (4, 4)
    # the two added layers: 3x3, 512 kernels, stride 1, pad 1
    assert all(c.stride == (1, 1) and c.padding == (1, 1) for c in convs[-2:])
    # pool5 removed: only the two pools after conv1 and conv2, and nothing after conv5 but convs/ReLU
    pools = [i for i, m in enumerate(model.body) if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 2 and pools[-1] < list(model.body).index(convs[2])
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d)
    model.eval()
    with torch.no_grad():
        features, logits = model.features_and_logits(torch.randn(2, 3, 224, 224))
    assert features.shape == (2, 512, 13, 13)  # the paper's 13x13 CAM
    assert logits.shape == (2, 1000)
    assert model.classifier_weight.shape == (1000, 512)


@pytest.mark.parametrize("batch_norm, layer", [(False, "body.1"), (True, "body.2")])
def test_the_layer_the_docs_name_for_feature_hide_and_seek_is_conv1_at_55x55(batch_norm, layer):
    # README and `--feature-has-after` name these for "after conv1"; body.2 was the max pool (27x27) without BN.
    model = build_model("alexnet_gap", 10, batch_norm=batch_norm)
    module = dict(model.named_modules())[layer]
    shapes = []
    module.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape)))
    model(torch.zeros(1, 3, 224, 224))
    assert isinstance(module, nn.ReLU) and shapes == [(1, 96, 55, 55)]


def test_alexnet_gap_small_stem_keeps_a_16x16_cam_on_64_pixel_images():
    model = build_model("alexnet_gap", 10, stem="small", width=0.25, batch_norm=True).eval()
    with torch.no_grad():
        features, logits = model.features_and_logits(torch.randn(3, 3, 64, 64))
    assert features.shape == (3, 128, 16, 16)
    assert logits.shape == (3, 10)
    assert [c.out_channels for c in _convs(model)] == [24, 64, 96, 96, 64, 128, 128]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 7
    assert "batch_norm=True" in repr(model) and "stem='small'" in repr(model)


def measured_receptive_field(model, side: int) -> int:
    """Side of the input region whose pixels move the centre cell of the CAM features (union over 16 inputs, so
    max pooling's single routes and ReLU's zeros still reach every pixel the cell can see)."""
    torch.manual_seed(0)
    x = torch.randn(16, 3, side, side, requires_grad=True)
    features, _ = model.eval().features_and_logits(x)
    h, w = features.shape[-2:]
    features[:, :, h // 2, w // 2].abs().sum().backward()
    seen = x.grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    assert rows.max() - rows.min() == cols.max() - cols.min()
    return int(rows.max() - rows.min() + 1)


@pytest.mark.parametrize("opts, side", [({"stem": "small"}, 96), ({"stem": "small", "alexnet_convs": 4}, 96),
                                        ({"stem": "small", "alexnet_convs": 2, "added_convs": 1}, 96), ({}, 320)])
def test_receptive_field_matches_what_the_gradient_reaches(opts, side):
    model = build_model("alexnet_gap", 10, width=0.125, batch_norm=True, **opts)
    assert model.receptive_field == measured_receptive_field(model, side)


def test_fewer_layers_keep_the_cam_size_and_shrink_the_receptive_field():
    full = build_model("alexnet_gap", 10, stem="small", width=0.125, batch_norm=True)
    short = build_model("alexnet_gap", 10, stem="small", width=0.125, batch_norm=True, alexnet_convs=2,
                        added_convs=1).eval()
    assert [c.out_channels for c in _convs(short)] == [12, 32, 64]  # conv1, conv2, one 3x3/512 layer
    assert [c.kernel_size[0] for c in _convs(short)] == [5, 5, 3]
    with torch.no_grad():
        features, logits = short.features_and_logits(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, 64, 16, 16) and logits.shape == (2, 10)
    # On a 64-pixel image a cell of the full network sees nearly everything, one of the short one under half.
    assert measured_receptive_field(full, 96) > 0.9 * 64 and measured_receptive_field(short, 96) < 0.5 * 64
    assert "alexnet_convs=2, added_convs=1" in repr(short)


def test_global_max_pooling_option():
    torch.manual_seed(0)
    gap = build_model("alexnet_gap", 3, stem="small", width=0.125).eval()
    gmp = build_model("alexnet_gap", 3, stem="small", width=0.125, pooling="max").eval()
    gmp.load_state_dict(gap.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f, avg_logits = gap.features_and_logits(x)
        max_logits = gmp(x)
    torch.testing.assert_close(avg_logits, gap.classifier(f.mean(dim=(2, 3))))
    torch.testing.assert_close(max_logits, gap.classifier(f.amax(dim=(2, 3))))
    assert isinstance(gmp.pool, nn.AdaptiveMaxPool2d)


@pytest.mark.parametrize("large, side", [(False, 2), (True, 4)])
def test_resnet50_cam_features_are_layer4(large, side):
    model = build_model("resnet50", 5, large_feature_map=large).eval()
    with torch.no_grad():
        features, logits = model.features_and_logits(torch.randn(1, 3, 64, 64))
        assert torch.equal(model(torch.zeros(1, 3, 64, 64)), model.features_and_logits(torch.zeros(1, 3, 64, 64))[1])
    assert features.shape == (1, 2048, side, side)  # stride 32, or 16 with the large feature map
    assert logits.shape == (1, 5)
    assert model.classifier_weight.shape == (5, 2048)


def test_build_model_rejects_unknown_archs_options_and_values():
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        build_model("vgg", 10)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['dropout'\] for arch 'alexnet_gap'"):
        build_model("alexnet_gap", 10, dropout=0.5)
    with pytest.raises(ValueError, match="stem='tiny'"):
        build_model("alexnet_gap", 10, stem="tiny")
    with pytest.raises(ValueError, match="width=0"):
        build_model("alexnet_gap", 10, width=0)
    with pytest.raises(ValueError, match="alexnet_convs=1 must be a whole number >= 2 and <= 5"):
        build_model("alexnet_gap", 10, alexnet_convs=1)
    with pytest.raises(ValueError, match="added_convs=0"):
        build_model("alexnet_gap", 10, added_convs=0)
    with pytest.raises(ValueError, match="pooling='sum'"):
        build_model("resnet50", 10, pooling="sum")
    with pytest.raises(ValueError, match="num_classes=0"):
        build_model("resnet50", 0)
    assert model_options("alexnet_gap") == {"stem": "imagenet", "width": 1.0, "pooling": "avg", "batch_norm": False,
                                            "alexnet_convs": 5, "added_convs": 2}
    assert isinstance(build_model("alexnet_gap", 2, stem="small", width=0.125), AlexNetGAP)
