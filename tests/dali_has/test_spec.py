import numpy as np
import pytest
import torch

from dali_has import HaSConfig, TemporalHaSConfig
from dali_has.spec import MAX_PATCH_SIZE


def test_defaults_are_the_papers_mixed_setting():
    cfg = HaSConfig()
    assert cfg.patch_sizes == (0, 16, 32, 44, 56) and cfg.p_hide == 0.5 and cfg.fill == (0.0,)
    assert repr(cfg) == "HaSConfig(patch_sizes=[0, 16, 32, 44, 56], p_hide=0.5, fill=0.0)"


@pytest.mark.parametrize("kwargs, match", [
    (dict(patch_sizes=[16, 2.5]), "2.5"),
    (dict(patch_sizes=[True]), "True"),
    (dict(patch_sizes="16"), "patch_sizes"),
    (dict(patch_sizes=[MAX_PATCH_SIZE + 1]), "16,777,216"),  # would wrap around in the operators' int32
    (dict(patch_sizes=2**32), "4294967296"),
    (dict(p_hide=-0.1), "p_hide=-0.1"),
    (dict(p_hide="0.5"), "p_hide"),
    (dict(fill=float("nan")), "fill"),
    (dict(fill=["a"]), "fill"),
])
def test_invalid_values_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HaSConfig(**kwargs)


def test_single_size_and_per_channel_fill():
    cfg = HaSConfig(patch_sizes=56, fill=(0.1, 0.2, 0.3))
    assert cfg.patch_sizes == (56,)
    assert cfg.fill_for(3) == (0.1, 0.2, 0.3)
    assert HaSConfig(fill=7).fill_for(3) == (7.0, 7.0, 7.0)
    with pytest.raises(ValueError, match="3 values but the images have 4 channels"):
        cfg.fill_for(4)


def test_numpy_and_torch_values_are_read_as_their_elements():
    cfg = HaSConfig(patch_sizes=np.array([0, 16]), p_hide=np.float64(0.25), fill=torch.tensor([1.0, 2.0, 3.0]))
    assert cfg == HaSConfig(patch_sizes=(0, 16), p_hide=0.25, fill=(1.0, 2.0, 3.0))
    assert HaSConfig(patch_sizes=np.int64(16)).patch_sizes == (16,)
    with pytest.raises(ValueError, match="patch_sizes contains"):
        HaSConfig(patch_sizes=np.array([[16, 32]]))  # a nested array is not a list of sizes


def test_a_has_argument_is_none_a_config_or_a_dict_of_its_settings():
    cfg = HaSConfig(patch_sizes=(0, 8), p_hide=0.25)
    assert HaSConfig.given(None) is None and HaSConfig.given(cfg) is cfg
    assert HaSConfig.given({"patch_sizes": [0, 8], "p_hide": 0.25}) == cfg
    with pytest.raises(ValueError, match=r"has=\(0, 8\); expected None, a dali_has.HaSConfig or a dict"):
        HaSConfig.given((0, 8))


def test_a_dict_without_a_required_setting_is_named():
    """It raised Python's TypeError ("missing 1 required positional argument"), which the CLI does not catch."""
    with pytest.raises(ValueError, match=r"temporal Hide-and-Seek settings \{'p_hide': 0.5\} lack \['segment'\]"):
        TemporalHaSConfig.given({"p_hide": 0.5})
    assert TemporalHaSConfig.from_dict({"segment": 3}) == TemporalHaSConfig(3)


def test_dict_round_trip_and_unknown_keys():
    cfg = HaSConfig(patch_sizes=(0, 8), p_hide=0.25, fill=(1, 2, 3))
    assert HaSConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="p_hid"):
        HaSConfig.from_dict({"p_hid": 0.5})
