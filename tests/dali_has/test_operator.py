"""Hide-and-Seek operator implementations against the numpy oracle and statistically (CPU; GPU under `gpu`)."""
import numpy as np
import pytest

from dali_has import HaSConfig, hide_and_seek, reference
from dali_has.spec import MAX_PATCH_SIZE
from tests.dali_has.has_harness import IMPLS, hidden_mask, random_images, run_has

SHAPES = [(50, 70, 3), (64, 64, 3), (33, 91, 3), (91, 20, 3)]  # non-square, different per sample


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["HWC", "CHW"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32])
def test_output_equals_oracle_for_the_mask_it_drew(impl, layout, dtype):
    rng = np.random.default_rng(0)
    images = random_images(rng, SHAPES, dtype, layout)
    cfg = HaSConfig(patch_sizes=(0, 8, 13, 16), p_hide=0.5, fill=(1.4, 2.6, 300.0))
    sizes_seen = set()
    for batch in run_has(images, layout=layout, impl=impl, iterations=4, **cfg.to_dict()):
        for x, y in zip(images, batch):
            assert y.dtype == x.dtype and y.shape == x.shape
            mask = hidden_mask(x, y, layout)
            size, _ = reference.infer_cells(mask, cfg.patch_sizes)  # a union of top-left grid cells, edges clipped
            sizes_seen.add(size)
            np.testing.assert_array_equal(y, reference.apply_mask(x, mask, cfg.fill, layout))
    assert len(sizes_seen) >= 2


@pytest.mark.parametrize("impl", IMPLS)
def test_p_zero_is_identity_and_p_one_hides_every_cell(impl):
    rng = np.random.default_rng(1)
    images = random_images(rng, SHAPES, np.float32, "HWC")
    (same,) = run_has(images, impl=impl, patch_sizes=(8, 16), p_hide=0.0, fill=-1.0)
    for x, y in zip(images, same):
        np.testing.assert_array_equal(x, y)
    (gone,) = run_has(images, impl=impl, patch_sizes=(13,), p_hide=1.0, fill=-1.0)
    for y in gone:
        assert (y == -1.0).all()
    (whole,) = run_has(images, impl=impl, patch_sizes=(MAX_PATCH_SIZE,), p_hide=1.0, fill=-1.0)  # one cell
    for y in whole:
        assert (y == -1.0).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_size_zero_leaves_the_sample_whole(impl):
    images = random_images(np.random.default_rng(2), [(40, 40, 3)] * 16, np.uint8, "HWC")
    outs = run_has(images, impl=impl, patch_sizes=(0, 10), p_hide=1.0, fill=0, iterations=3)
    kinds = {("whole" if np.array_equal(x, y) else "hidden" if (y == 0).all() else "mixed")
             for batch in outs for x, y in zip(images, batch)}
    assert kinds == {"whole", "hidden"}


@pytest.mark.parametrize("impl", IMPLS)
def test_hidden_share_and_size_choice_match_the_rule(impl):
    # Sizes that do not divide each other make every mask except all-clear/all-hidden identify its size.
    cfg = HaSConfig(patch_sizes=(0, 7, 10, 13), p_hide=0.3, fill=0)
    images = random_images(np.random.default_rng(3), [(64, 64, 3)] * 50, np.uint8, "HWC")
    outs = run_has(images, impl=impl, iterations=8, **cfg.to_dict())
    shares, counts = [], dict.fromkeys(cfg.patch_sizes, 0)
    for batch in outs:
        for x, y in zip(images, batch):
            mask = hidden_mask(x, y, "HWC")
            shares.append(mask.mean())
            counts[reference.infer_cells(mask, cfg.patch_sizes)[0]] += 1
    n = len(shares)
    # Per-sample share has std <= 0.5 * p-ish; 4 sigma of the mean of 400 samples is < 0.04.
    assert abs(np.mean(shares) - reference.hiding_share(cfg)) < 0.04
    for size, c in counts.items():  # multinomial, p = 1/4: std = sqrt(400 * 3/16) ~ 8.7; allow 4 sigma
        assert abs(c - n / 4) < 35, (size, counts)


@pytest.mark.parametrize("impl", IMPLS)
def test_masks_differ_per_sample_and_iteration_and_follow_the_seed(impl):
    images = random_images(np.random.default_rng(4), [(48, 48, 3)] * 8, np.uint8, "CHW")
    kw = dict(layout="CHW", impl=impl, patch_sizes=(8,), p_hide=0.5, fill=0, iterations=2)
    a = run_has(images, seed=7, **kw)
    b = run_has(images, seed=7, **kw)
    c = run_has(images, seed=8, **kw)
    masks = [[hidden_mask(x, y, "CHW") for x, y in zip(images, batch)] for batch in a]
    assert len({m.tobytes() for m in masks[0]}) == len(images)  # per sample
    assert not any(np.array_equal(m0, m1) for m0, m1 in zip(*masks))  # per iteration
    for ba, bb in zip(a, b):
        for ya, yb in zip(ba, bb):
            np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(ya, yc) for ya, yc in zip(a[0], c[0]))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32])
def test_fills_ending_in_a_half_round_to_even_on_integer_images_and_stay_exact_on_float(impl, device, dtype):
    # DALI's casts round halves away from zero on the CPU and to even on the GPU; the oracle rounds to even.
    images = random_images(np.random.default_rng(6), [(20, 30, 3)] * 2, dtype, "HWC")
    fill = (2.5, 3.5, -0.5)
    (batch,) = run_has(images, impl=impl, device=device, patch_sizes=(8,), p_hide=1.0, fill=fill)
    for x, y in zip(images, batch):
        assert y.dtype == x.dtype
        expected = (2, 4, 0) if dtype == np.uint8 else fill
        np.testing.assert_array_equal(y, np.broadcast_to(np.array(expected, dtype), x.shape))
        np.testing.assert_array_equal(y, reference.apply_mask(x, np.ones(x.shape[:2], bool), fill, "HWC"))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_hidden_nan_and_infinite_pixels_become_the_fill(impl, device):
    image = np.full((16, 16, 3), np.nan, np.float32)
    image[::2, :, 1] = np.inf
    (batch,) = run_has([image], impl=impl, device=device, patch_sizes=(8,), p_hide=1.0, fill=(1.0, -2.0, 0.5))
    np.testing.assert_array_equal(batch[0], np.broadcast_to(np.array([1.0, -2.0, 0.5], np.float32), image.shape))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["HWC", "CHW"])
@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_a_fill_of_more_values_than_channels_fails_rather_than_adding_channels(impl, layout, device):
    """The composition broadcast 1-channel images against 3 fill values: 3-channel output, silently."""
    image = np.full((1, 8, 8) if layout == "CHW" else (8, 8, 1), 100, np.uint8)
    with pytest.raises((RuntimeError, ValueError), match="has 3 values but sample 0 has 1 channels|same size in bytes"):
        run_has([image], layout=layout, impl=impl, device=device, patch_sizes=(4,), p_hide=1.0, fill=(1, 2, 3))


@pytest.mark.parametrize("device", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_the_fused_operator_refuses_a_fill_beyond_float16_on_float16_images(device):
    # It wrote inf; the type is known only at run time, so the operator names it then. (The composed fallback,
    # whose graph cannot see the type, still writes inf: README, "In your own DALI pipeline".)
    image = np.zeros((16, 16, 3), np.float16)
    with pytest.raises(ValueError, match=r"Argument `fill` = 1e\+06 does not fit float16 \(largest 65504\)"):
        run_has([image], impl="fused", device=device, patch_sizes=(8,), p_hide=1.0, fill=1e6)
    (batch,) = run_has([image], impl="fused", device=device, patch_sizes=(8,), p_hide=1.0, fill=65504.0)
    assert (batch[0] == np.float16(65504)).all()


@pytest.mark.parametrize("bad, match", [
    (dict(p_hide=1.5), "p_hide"),
    (dict(patch_sizes=(16, -1)), "patch_sizes"),
    (dict(patch_sizes=()), "patch_sizes"),
    (dict(fill=[]), "fill"),
    (dict(impl="magic"), "impl"),
    (dict(fill=1e39), r"fill=1e\+39 is beyond float32's largest"),  # written as inf into float32 images
    (dict(fill=(0, -1e39, 0)), "beyond float32's largest"),
    (dict(fill=10**400), "fill=1000.*finite numbers"),  # an OverflowError that did not name the fill
    (dict(patch_sizes=b"\x10"), "patch_sizes"),  # bytes were taken as patch size 16
])
def test_bad_settings_are_rejected_with_the_parameter_named(bad, match):
    with pytest.raises(ValueError, match=match):
        hide_and_seek(None, **bad)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["HWC", "CHW"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32])
def test_gpu_output_equals_oracle(impl, layout, dtype):
    images = random_images(np.random.default_rng(5), SHAPES, dtype, layout)
    cfg = HaSConfig(patch_sizes=(0, 8, 13), p_hide=0.5, fill=(3.0, 4.0, 5.0))
    for batch in run_has(images, layout=layout, impl=impl, device="gpu", iterations=3, **cfg.to_dict()):
        for x, y in zip(images, batch):
            assert y.dtype == x.dtype and y.shape == x.shape
            mask = hidden_mask(x, y, layout)
            reference.infer_cells(mask, cfg.patch_sizes)
            np.testing.assert_array_equal(y, reference.apply_mask(x, mask, cfg.fill, layout))
