"""Every GPU pipeline the project builds, *defined* on the CPU machine (never built, so no GPU is needed).

Defining a DALI graph checks the arguments (e.g. that named arguments live on the CPU): errors a user with a GPU
would otherwise meet first. It does not check that an operator placed on the GPU has a GPU backend (a CPU-only
operator fed GPU data is defined without error), so `assert_placed` walks each graph for that. The `gpu`-marked
tests run the same pipelines on a GPU.
"""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dali_has import HaSConfig, TemporalHaSConfig
from pipelines import ImageOptions, PipelineOptions, TrainAugment, train_pipeline, val_pipeline
from pipelines.bad_files import decode_pipeline
from pipelines.dataset_mean import mean_pipeline
from pipelines.feature_pipeline import FeatureIndex, feature_pipeline
from pipelines.files import load_dataset
from pipelines.video_pipeline import video_pipeline
from tests.graph_placement import assert_placed


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    (root / "a").mkdir()
    Image.new("RGB", (40, 30), (90, 120, 200)).save(root / "a" / "0.jpg")
    return root


@pytest.fixture(scope="module")
def feature_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    np.save(root / "v.npy", np.zeros((10, 4), np.float32))
    (root / "index.json").write_text(json.dumps(
        {"classes": ["a"], "videos": [{"features": "v.npy", "label": 0, "frames": 10, "segments": [[0, 5]]}]}))
    return FeatureIndex.load(str(root / "index.json"))


GPU = PipelineOptions(batch_size=4, device="gpu", device_id=0)


def image_options(folder, **kwargs):
    return ImageOptions(data=str(folder), crop=16, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("has_impl, resize_impl", [(None, "auto"), ("composed", "auto"), ("fused", "auto"),
                                                   (None, "fused"), ("fused", "fused")])
def test_train_pipeline(folder, dtype, layout, has_impl, resize_impl, request):
    if "fused" in (has_impl, resize_impl):
        request.getfixturevalue("fused_on_gpu_definable")
    has = None if has_impl is None else HaSConfig(fill=(0.5, -1.0, 2.0))
    pipe = train_pipeline(GPU, image_options(folder, dtype=dtype, layout=layout),
                          TrainAugment(has=has, has_impl=has_impl or "auto", resize_impl=resize_impl))
    images = pipe._graph_out[0]  # defined, not built: the node the images come from
    assert ("ResizeMirrorNormalizeHide" in images.name) == (resize_impl == "fused") and images.device == "gpu"
    assert_placed(pipe)


@pytest.mark.parametrize("resize_impl", ["auto", "fused"])
def test_train_pipeline_without_flips(folder, resize_impl, request):
    """mirror is then the number 0, not a coin-flip node, for the fused operator and crop_mirror_normalize."""
    if resize_impl == "fused":
        request.getfixturevalue("fused_on_gpu_definable")
    assert_placed(train_pipeline(GPU, image_options(folder), TrainAugment(flip_probability=0.0,
                                                                          resize_impl=resize_impl)))


@pytest.mark.parametrize("policy", ["backend", "full"])
def test_the_operator_concurrency_policy_reaches_the_gpu_pipelines(folder, policy):
    options = PipelineOptions(batch_size=4, device="gpu", device_id=0, operator_concurrency=policy)
    for pipe in (train_pipeline(options, image_options(folder), TrainAugment()),
                 val_pipeline(options, image_options(folder))):
        assert pipe.concurrency.name == policy.upper()


@pytest.mark.parametrize("train, has_impl", [(True, "composed"), (True, "fused"), (False, None), (False, "ten_crop")])
def test_pipelines_reading_webdataset_shards(folder, tmp_path, train, has_impl, request):
    from pipelines.webdataset import ShardWriter

    writer = ShardWriter(tmp_path / "s.tar")
    writer.add("a/0", (folder / "a" / "0.jpg").read_bytes(), 0)
    writer.close()
    image = ImageOptions(data=str(tmp_path), crop=16)
    if has_impl == "fused":
        request.getfixturevalue("fused_on_gpu_definable")
    assert_placed(train_pipeline(GPU, image, TrainAugment(has=HaSConfig(), has_impl=has_impl)) if train else
                  val_pipeline(GPU, image, ten_crop=has_impl == "ten_crop"))


@pytest.mark.parametrize("train", [True, False])
def test_pipelines_reading_a_file_list(folder, tmp_path, train, request):
    listed = tmp_path / "list.txt"
    listed.write_text(f"{folder / 'a' / '0.jpg'} 0\n")
    image = ImageOptions(data=str(listed), crop=16)
    if train:
        request.getfixturevalue("fused_on_gpu_definable")
    assert_placed(train_pipeline(GPU, image, TrainAugment(has=HaSConfig(), resize_impl="fused")) if train else
                  val_pipeline(GPU, image))


@pytest.fixture(scope="module")
def pixels_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixels")
    (root / "a").mkdir()
    np.save(root / "a" / "0.npy", np.zeros((30, 40, 3), np.uint8))
    return root


@pytest.mark.parametrize("what", ["train", "train, fused HaS", "train, fused resize", "val", "mean", "bad files"])
def test_pipelines_reading_decoded_pixels(pixels_folder, what, request):
    image = image_options(pixels_folder)
    if "fused" in what:
        request.getfixturevalue("fused_on_gpu_definable")
    if what == "train":
        pipe = train_pipeline(GPU, image, TrainAugment(has=HaSConfig(), has_impl="composed"))
    elif what == "train, fused HaS":  # with the built-in resize
        pipe = train_pipeline(GPU, image, TrainAugment(has=HaSConfig(), has_impl="fused", resize_impl="builtin"))
    elif what == "train, fused resize":
        pipe = train_pipeline(GPU, image, TrainAugment(has=HaSConfig(), resize_impl="fused"))
    elif what == "val":
        pipe = val_pipeline(GPU, image, ten_crop=True)
    elif what == "mean":
        pipe = mean_pipeline(load_dataset(pixels_folder), GPU)
    else:
        pipe = decode_pipeline(GPU, image, pixels=True)
    assert_placed(pipe)


@pytest.mark.parametrize("ten_crop", [False, True])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype, resize", [(torch.float32, None), (torch.float16, 20)])
def test_val_pipeline(folder, ten_crop, layout, dtype, resize):
    assert_placed(val_pipeline(GPU, image_options(folder, layout=layout, dtype=dtype), resize=resize,
                               ten_crop=ten_crop))


@pytest.mark.parametrize("train", [False, True])
def test_feature_pipeline(feature_index, train):
    assert_placed(feature_pipeline(feature_index, GPU, frames=6, train=train,
                                   has=TemporalHaSConfig(segment=2, fill=(0.5, 1.0, 2.0, 3.0))))


@pytest.mark.parametrize("train", [False, True])
def test_video_pipeline(tmp_path, train):
    (tmp_path / "v.mjpeg").write_bytes(b"defined, never decoded")
    assert_placed(video_pipeline([str(tmp_path / "v.mjpeg")], GPU, frames=6, train=train,
                                 has=TemporalHaSConfig(segment=2, fill=(1.0, 2.5, 3.0))))


def test_dataset_mean_pipeline(folder):
    assert_placed(mean_pipeline(load_dataset(folder), GPU))


def test_bad_file_locator_decodes_with_the_gpu_decoder(folder):
    assert_placed(decode_pipeline(GPU, image_options(folder)))


def test_every_gpu_pipeline_uses_the_current_cuda_device_of_its_rank(folder, feature_index, tmp_path, monkeypatch):
    # torchrun scripts call torch.cuda.set_device(local_rank); without an explicit device_id, rank 3 must decode
    # on GPU 3, not on GPU 0.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    options = PipelineOptions(batch_size=4, device="gpu")
    (tmp_path / "v.mjpeg").write_bytes(b"defined, never decoded")
    pipes = [
        train_pipeline(options, image_options(folder)),
        val_pipeline(options, image_options(folder)),
        feature_pipeline(feature_index, options, frames=6, train=True),
        video_pipeline([str(tmp_path / "v.mjpeg")], options, frames=6, train=True),
        mean_pipeline(load_dataset(folder), options),
    ]
    assert [p.device_id for p in pipes] == [3] * len(pipes)
