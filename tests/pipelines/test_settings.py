"""The home of every pipeline setting: what each options class accepts, derives and refuses."""
from __future__ import annotations

import pytest
import torch

from dali_has import HaSConfig
from pipelines import settings
from pipelines.settings import PipelineOptions, TrainAugment, as_train_augment, split_options


def test_a_checkpoint_implies_checkpointing_and_must_be_bytes():
    assert PipelineOptions(batch_size=1, checkpoint=b"x").checkpointing
    assert not PipelineOptions(batch_size=1).checkpointing
    with pytest.raises(ValueError, match="checkpoint of type bytearray; expected the bytes of a DALI checkpoint"):
        PipelineOptions(batch_size=1, checkpoint=bytearray(b"x"))


def test_each_shard_draws_its_own_seed():
    assert PipelineOptions(batch_size=1, seed=5, shard_id=2, num_shards=4).pipeline_seed == 7
    assert PipelineOptions(batch_size=1).pipeline_seed is None  # DALI picks one
    with pytest.raises(ValueError, match="shard_id=4 must be a whole number >= 0 and <= 3"):
        PipelineOptions(batch_size=1, shard_id=4, num_shards=4)


@pytest.mark.parametrize("kwargs, named", [
    ({"batch_size": 0}, "batch_size=0"), ({"batch_size": settings.MAX_BATCH_SIZE + 1}, "batch_size=65536"),
    ({"device": "cuda"}, "device='cuda'"), ({"num_threads": 0}, "num_threads=0"),
    ({"num_shards": 2**31}, "num_shards=2147483648"), ({"operator_concurrency": "all"}, "operator_concurrency='all'"),
    ({"checkpointing": 1}, "checkpointing=1"),
])
def test_pipeline_options_name_what_they_refuse(kwargs, named):
    with pytest.raises(ValueError, match=named):
        PipelineOptions(**{"batch_size": 1, **kwargs})


def test_train_augment_from_anything_a_caller_may_give():
    assert as_train_augment(None) == TrainAugment()
    augment = as_train_augment({"has": {"p_hide": 0.25}, "flip_probability": 0.0})
    assert augment.has == HaSConfig(p_hide=0.25) and augment.flip_probability == 0.0
    assert TrainAugment.from_dict(augment.to_dict()) == augment
    with pytest.raises(ValueError, match=r"unknown training augmentation option\(s\) \['flip'\]"):
        as_train_augment({"flip": 0.5})


def test_options_split_between_the_pipeline_and_the_images():
    run, image = split_options({"seed": 1, "crop": 32, "layout": "NHWC"})
    assert run == {"seed": 1} and image == {"crop": 32, "layout": "NHWC"}
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['crops'\]"):
        split_options({"crops": 32})


def test_devices_and_threads(monkeypatch):
    assert settings.dali_device_id("cpu", 3) is None  # DALI runs without CUDA
    assert settings.dali_device_id("gpu", 2) == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='gpu' but no CUDA device is visible; use device='cpu'"):
        settings.dali_device_id("gpu")
    assert settings.default_device() == "cpu" and settings.torch_device("gpu") == torch.device("cuda")
    monkeypatch.setattr(settings, "usable_cores", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert settings.default_num_threads() == 2  # the node's cores shared by its ranks
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert settings.default_num_threads() == 1


def test_colours_and_dtypes():
    assert settings.rgb("mean", 2) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match=r"std=\(1, 0, 1\); expected 3 finite positive numbers \(R, G, B\)"):
        settings.rgb("std", (1, 0, 1), positive=True)
    assert settings.check_dtype("float16") is torch.float16 and settings.check_dtype(torch.float32) is torch.float32
    with pytest.raises(ValueError, match="dtype=torch.bfloat16; expected torch.float32 or torch.float16"):
        settings.check_dtype(torch.bfloat16)
