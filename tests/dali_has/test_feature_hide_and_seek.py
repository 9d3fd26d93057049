"""FeatureHideAndSeek: the grid rule on feature maps, its statistics, the fill, eval identity and gradients."""
import numpy as np
import pytest
import torch
from torch import nn

from dali_has import FeatureHideAndSeek, insert_after, reference


def features(b=8, c=4, h=13, w=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=g) + 1.0  # never equal to a fill of 0 or the mean of a batch


def test_masks_are_grid_cells_with_clipped_edges_and_follow_the_hiding_share():
    torch.manual_seed(0)
    has = FeatureHideAndSeek(patch_sizes=(0, 3, 5), p_hide=0.3)
    x = features(b=400, h=13, w=17)
    mask = has.draw_mask(x)
    assert mask.shape == (400, 1, 13, 17) and mask.dtype == torch.bool
    sizes = [reference.infer_cells(m[0].numpy(), (0, 3, 5))[0] for m in mask]
    # Multinomial over 3 sizes (p = 1/3 each, n = 400): std ~ 9.4; 4 sigma. All-clear masks of size 3 or 5
    # read as size 0, so size 0 may gain a little.
    counts = [sizes.count(s) for s in (0, 3, 5)]
    assert all(abs(c - 400 / 3) < 50 for c in counts), counts
    # Expected hidden share: p * (share of non-zero sizes) = 0.3 * 2/3 = 0.2 (edge cells weigh less but are
    # hidden at the same rate, so the pixel share is still p per sample).
    assert abs(mask.float().mean().item() - 0.2) < 0.035  # std of the mean ~ 0.0085; 4 sigma


def test_p_zero_and_p_one():
    x = features()
    torch.testing.assert_close(FeatureHideAndSeek(4, p_hide=0.0, fill=0.0)(x), x, rtol=0, atol=0)
    assert (FeatureHideAndSeek(4, p_hide=1.0, fill=-2.0)(x) == -2.0).all()


def test_hidden_cells_take_the_running_channel_mean_and_kept_cells_are_unchanged():
    torch.manual_seed(1)
    has = FeatureHideAndSeek((2, 4), p_hide=0.5, fill="mean", momentum=0.25)
    first, second = features(seed=1), features(seed=2) * 3
    has(first)  # the first batch sets the running mean outright
    torch.testing.assert_close(has.running_mean, first.mean(dim=(0, 2, 3)))
    mask = has.draw_mask(second)
    has._update_running_mean(second)
    expected_mean = 0.75 * first.mean(dim=(0, 2, 3)) + 0.25 * second.mean(dim=(0, 2, 3))
    torch.testing.assert_close(has.running_mean, expected_mean)
    out = has.apply_mask(second, mask)
    hidden = mask.expand_as(second)
    assert torch.equal(out[~hidden], second[~hidden])  # no rescaling of kept activations
    assert torch.equal(out.permute(0, 2, 3, 1)[mask[:, 0]], has.running_mean.expand(int(mask.sum()), -1))


def test_eval_mode_is_identity_and_does_not_touch_the_running_mean():
    has = FeatureHideAndSeek((2,), p_hide=1.0).eval()
    x = features()
    assert has(x) is x
    assert has.running_mean.numel() == 0
    with pytest.raises(ValueError, match=r"expects \[B, C, H, W\] features, got shape \(3, 5, 5\)"):
        has(torch.ones(3, 5, 5))  # as in training: eval mode returned it, so the model failed only in training


def test_one_module_serves_one_layer():
    has = FeatureHideAndSeek((2,))
    has(torch.ones(1, 2, 4, 4))
    with pytest.raises(ValueError, match="features have 3 channels, the running mean has 2: one FeatureHideAndSeek "
                                         "serves one layer"):
        has(torch.ones(1, 3, 4, 4))


def test_a_numeric_fill_is_written_as_the_image_operators_write_it():
    """It was truncated on integer features (3.5 -> 3) and became inf on float16 ones."""
    def hidden(fill, dtype):
        return FeatureHideAndSeek((2,), p_hide=1.0, fill=fill)(torch.zeros(1, 1, 2, 2, dtype=dtype)).unique()

    assert hidden(3.5, torch.int32).tolist() == [4] and hidden(-1.5, torch.int32).tolist() == [-2]
    assert hidden(300.0, torch.uint8).tolist() == [255]
    assert hidden(0.1, torch.float16).tolist() == [torch.tensor(0.1, dtype=torch.float16).item()]
    with pytest.raises(ValueError, match="fill=.100000.0. does not fit torch.float16"):
        hidden(1e5, torch.float16)


def test_gradient_reaches_kept_cells_only():
    torch.manual_seed(2)
    has = FeatureHideAndSeek((3,), p_hide=0.5, fill=0.0)
    x = features().requires_grad_()
    mask = has.draw_mask(x)
    has.apply_mask(x, mask).pow(2).sum().backward()
    hidden = mask.expand_as(x)
    assert hidden.any() and (~hidden).any()
    assert (x.grad[hidden] == 0).all()
    assert (x.grad[~hidden] != 0).all()


def test_masks_differ_per_sample_and_step():
    torch.manual_seed(3)
    has = FeatureHideAndSeek((4,), p_hide=0.5)
    x = features(b=6, h=16, w=16)
    a, b = has.draw_mask(x), has.draw_mask(x)
    assert len({m.numpy().tobytes() for m in a}) == 6
    assert not torch.equal(a, b)


def test_an_empty_batch_leaves_the_running_mean_as_it_was():
    module = FeatureHideAndSeek([2], p_hide=1.0)
    module(torch.zeros(0, 3, 4, 4))  # its mean is NaN, which stayed in the running mean for good
    module(torch.ones(2, 3, 4, 4))
    torch.testing.assert_close(module.running_mean, torch.ones(3))


def test_running_mean_is_saved_and_loaded():
    has = FeatureHideAndSeek((2,))
    has(features())
    fresh = FeatureHideAndSeek((2,))
    fresh.load_state_dict(has.state_dict())
    torch.testing.assert_close(fresh.running_mean, has.running_mean)


def test_the_running_mean_follows_the_model_to_half_precision_and_loads_from_any_number_type():
    """After model.half() the next training step raised in lerp_ ("expected dtype c10::Half"); a saved float16 or
    int64 running mean made the same failure after loading."""
    has = FeatureHideAndSeek((2,))
    has(features())
    has.half()(features().half())  # the running mean is now float16, updated from a float16 batch
    assert has.running_mean.dtype == torch.float16
    for saved in (has.running_mean, has.running_mean.round().long()):
        fresh = FeatureHideAndSeek((2,))
        fresh.load_state_dict({"running_mean": saved})
        fresh(features())
        assert fresh.running_mean.dtype == torch.float32
    on_meta = FeatureHideAndSeek((2,)).to("meta")  # as the trainer does: the model moves, then weights load
    with pytest.warns(UserWarning, match="meta parameter"):  # torch: loading copies no data onto "meta"
        on_meta.load_state_dict({"running_mean": has.running_mean})
    assert on_meta.running_mean.device.type == "meta"  # it was made on the CPU: a GPU resume failed its next step


@pytest.mark.parametrize("bad, message", [
    (dict(patch_sizes=(-1,)), "patch_sizes"), (dict(patch_sizes=(4,), p_hide=2), "p_hide=2"),
    (dict(patch_sizes=(4,), fill="median"), "fill='median'"), (dict(patch_sizes=(4,), momentum=0), "momentum=0"),
    (dict(patch_sizes=(4,), fill=np.array([1.0, 2.0])), "expected 'mean' or a number"),
    (dict(patch_sizes=(4,), fill=True), "fill=True; expected 'mean' or a number"),
])
def test_settings_are_validated(bad, message):
    with pytest.raises(ValueError, match=message):
        FeatureHideAndSeek(**bad)


def test_repr():
    assert repr(FeatureHideAndSeek((5, 11), 0.5)) == \
        "FeatureHideAndSeek(patch_sizes=[5, 11], p_hide=0.5, fill='mean', momentum=0.1)"


def test_insert_after_a_named_layer():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(8, 8, 3), nn.ReLU()))
    has = FeatureHideAndSeek((2,), p_hide=1.0, fill=0.0)
    insert_after(model, "2.0", has)
    assert model[2][0][1] is has
    model.eval()
    assert model(torch.rand(1, 3, 9, 9)).abs().sum() > 0  # identity at eval
    model.train()
    assert (model(torch.rand(1, 3, 9, 9)) == 0).all()  # hidden (fill 0, then ReLU)
    with pytest.raises(ValueError, match="no layer named 'conv9'.*2.0"):
        insert_after(model, "conv9", has)
    with pytest.raises(ValueError, match="no layer named ''; it has no submodules"):
        insert_after(nn.Linear(2, 2), "", has)
