import numpy as np
import pytest
import torch

from dali_has import HaSConfig, reference
from dali_has.spec import MAX_PATCH_SIZE
from dali_has.torch_transform import HideAndSeek


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_transform_matches_the_numpy_oracle(dtype):
    t = HideAndSeek(patch_sizes=(13,), p_hide=0.5, fill=(1.6, 2.0, 300.0))
    image = torch.randint(10, 240, (3, 50, 70)).to(dtype)
    params = t.make_params(50, 70, generator=torch.Generator().manual_seed(0))
    out = t.transform(image, params)
    mask = reference.cells_to_mask(params["cells"].numpy(), 13, 50, 70)
    assert 0 < mask.mean() < 1
    expected = reference.apply_mask(image.numpy(), mask, t.cfg.fill, "CHW")
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.float32])
def test_a_cuda_image_is_hidden_on_its_device_as_on_the_cpu(dtype):
    t = HideAndSeek(patch_sizes=(13,), p_hide=0.5, fill=(1.6, 2.0, 3.0))
    image = torch.randint(10, 240, (3, 50, 70)).to(dtype)
    params = t.make_params(50, 70, generator=torch.Generator().manual_seed(0))
    out = t.transform(image.cuda(), params)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), t.transform(image, params), rtol=0, atol=0)


def test_hidden_share_and_repr():
    torch.manual_seed(0)
    t = HideAndSeek(patch_sizes=(0, 8, 16), p_hide=0.5, fill=-1.0)
    shares = [(t(torch.zeros(3, 64, 48)) == -1).all(0).float().mean().item() for _ in range(1000)]
    assert abs(np.mean(shares) - reference.hiding_share(HaSConfig((0, 8, 16), 0.5))) < 0.03
    assert repr(t) == "HideAndSeek(patch_sizes=[0, 8, 16], p_hide=0.5, fill=-1.0)"
    with pytest.raises(ValueError, match="one \\[C, H, W\\] image"):
        t(torch.zeros(2, 3, 8, 8))


def test_the_largest_patch_size_hides_the_whole_image_as_one_cell():
    """The mask used to be the cells repeated `size` times per axis: 2**24 per side for this size."""
    out = HideAndSeek(patch_sizes=MAX_PATCH_SIZE, p_hide=1.0, fill=3.0)(torch.zeros(3, 40, 30))
    assert (out == 3.0).all()
    assert reference.cells_to_mask(np.ones((1, 1), bool), MAX_PATCH_SIZE, 40, 30).all()


@pytest.mark.parametrize("image, error", [(torch.zeros(3, 8, 8, dtype=torch.bool), "real-valued"),
                                          (torch.zeros(3, 8, 8, dtype=torch.complex64), "real-valued"),
                                          (np.zeros((3, 8, 8), np.float32), "torch.Tensor")])
def test_images_that_are_not_real_tensors_are_refused_saying_so(image, error):
    with pytest.raises(TypeError, match=error):
        HideAndSeek()(image)


def test_a_channels_last_image_is_refused_not_hidden_over_width_and_channels():
    with pytest.raises(ValueError, match="looks like \\[H, W, C\\].*permute"):
        HideAndSeek()(torch.zeros(48, 64, 3, dtype=torch.uint8))
    for chw in ((3, 48, 3), (2, 32, 3)):  # [C, H, W] with a 3-pixel width passes, also with 2 channels
        assert HideAndSeek()(torch.zeros(chw)).shape == chw


@pytest.mark.parametrize("dtype, fill", [(torch.int32, 3e9), (torch.int32, -3e9), (torch.int32, 2147483647.0),
                                         (torch.int64, 1e19), (torch.int64, -1e19), (torch.uint8, 2.5),
                                         (torch.int16, -2.5), (torch.float64, 0.1)])
def test_the_fill_is_written_as_the_numpy_oracle_writes_it(dtype, fill):
    # Clamped in float32, int32's largest became 2**31 and wrapped to its smallest (and 1e19 did so in int64).
    t = HideAndSeek(patch_sizes=(8,), p_hide=1.0, fill=fill)
    image = torch.zeros(3, 8, 8, dtype=dtype)
    out = t(image)
    expected = reference.apply_mask(image.numpy(), np.ones((8, 8), bool), (fill,), "CHW")
    np.testing.assert_array_equal(out.numpy(), expected)


def test_a_fill_beyond_a_float_type_is_refused_not_written_as_inf():
    t = HideAndSeek(patch_sizes=(8,), p_hide=1.0, fill=1e6)
    with pytest.raises(ValueError, match=r"fill=\[1000000.0, 1000000.0, 1000000.0\] does not fit torch.float16"):
        t(torch.zeros(3, 8, 8, dtype=torch.float16))
    assert (t(torch.zeros(3, 8, 8)) == 1e6).all()  # float32 holds it
