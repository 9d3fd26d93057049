"""Feature-sequence pipeline: index checks, uniform sampling, HaS in training only, exactly-once epochs."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dali_has import TemporalHaSConfig, reference
from pipelines.feature_pipeline import (
    FeatureIndex,
    check_finite_features,
    feature_loader,
    feature_pipeline,
    mean_feature,
)
from pipelines.settings import PipelineOptions
from tests.pipelines.frame_sampling import uniform_frame_indices

DIM = 3


def write_index(tmp_path, lengths, dtype=np.float32):
    """Video i has features [t, i, label] at step t, so a batch tells which steps of which video it holds."""
    videos = []
    for i, length in enumerate(lengths):
        label = i % 3
        features = np.stack([np.arange(length), np.full(length, i), np.full(length, label)], axis=1)
        np.save(tmp_path / f"v{i}.npy", features.astype(dtype))
        videos.append({"features": f"v{i}.npy", "label": label, "frames": length, "segments": [[0, length]]})
    path = tmp_path / "index.json"
    path.write_text(json.dumps({"classes": ["a", "b", "c"], "videos": videos}))
    return FeatureIndex.load(str(path))


def loader(index, *, frames=8, train=False, has=None, **options):
    options = PipelineOptions(**{"batch_size": 3, **options})
    return feature_loader(index, options, frames=frames, train=train, has=has)


def test_every_video_exactly_once_per_epoch_with_a_partial_last_batch(tmp_path):
    index = write_index(tmp_path, [5, 9, 12, 3, 20, 7, 8])
    data = loader(index, train=True, seed=3)
    assert len(data) == 3 and data.num_samples == 7
    orders = []
    for _ in range(3):
        batches = list(data)
        assert [len(b.rows) for b in batches] == [3, 3, 1]
        rows = [r for b in batches for r in b.rows.tolist()]
        assert sorted(rows) == list(range(7))
        for b in batches:
            assert b.sequences.shape[1:] == (8, DIM) and str(b.sequences.dtype) == "torch.float32"
            np.testing.assert_array_equal(b.sequences[:, 0, 1].numpy(), b.rows.numpy())  # features of that row
            np.testing.assert_array_equal(b.labels.numpy(), index.labels[b.rows.numpy()])
        orders.append(rows)
    assert len({tuple(o) for o in orders}) > 1  # reshuffled between epochs


def test_shards_split_the_videos_exactly(tmp_path):
    index = write_index(tmp_path, [4] * 7)
    seen = [r for shard in range(2)
            for b in loader(index, shard_id=shard, num_shards=2) for r in b.rows.tolist()]
    assert sorted(seen) == list(range(7))


def test_a_for_that_stops_early_is_followed_by_a_fresh_full_epoch(tmp_path):
    # The image loader's rule: the abandoned epoch's pipeline is rebuilt, nothing is resumed half-way.
    data = loader(write_index(tmp_path, [4] * 7), train=True, seed=1)
    abandoned = iter(data)
    next(abandoned)
    assert sorted(r for batch in data for r in batch.rows.tolist()) == list(range(7))
    with pytest.raises(RuntimeError, match="newer `for`"):
        next(abandoned)


def test_uniform_sampling_takes_the_middle_step_of_each_stretch(tmp_path):
    lengths = [5, 8, 13, 40]
    index = write_index(tmp_path, lengths, dtype=np.float16)  # float16 files are read too
    (batch,) = list(loader(index, frames=8, batch_size=4))
    for row, steps in zip(batch.rows.tolist(), batch.sequences[:, :, 0].numpy()):
        np.testing.assert_array_equal(steps, uniform_frame_indices(lengths[row], 8))
    assert uniform_frame_indices(40, 8).tolist() == [2, 7, 12, 17, 22, 27, 32, 37]
    assert uniform_frame_indices(5, 8).tolist() == [0, 0, 1, 2, 2, 3, 4, 4]  # floor((j + 0.5) * 5 / 8)


def test_hide_and_seek_in_training_only_with_a_per_feature_fill(tmp_path):
    index = write_index(tmp_path, [30] * 6)
    has = TemporalHaSConfig(segment=3, p_hide=0.5, fill=(-1.0, -2.0, -3.0))
    hidden_any = False
    for batch in loader(index, frames=10, batch_size=6, train=True, has=has, seed=1):
        for x in batch.sequences.numpy():
            frames = (x == [-1.0, -2.0, -3.0]).all(axis=1)
            reference.infer_segments(frames, 3)  # 4 segments: 3 of 3 frames and the clipped last one
            hidden_any |= frames.any()
    assert hidden_any
    for batch in loader(index, frames=10, batch_size=6, train=False, has=has):
        assert (batch.sequences.numpy() >= 0).all()  # never hidden at evaluation
    with pytest.raises(ValueError, match="lack \\['segment'\\]"):
        feature_pipeline(index, PipelineOptions(batch_size=6), frames=10, train=True, has={"p_hide": 0.5})
    as_dict = loader(index, frames=10, batch_size=6, train=True, has=has.to_dict(), seed=1)  # failed: no .segment
    for a, b in zip(loader(index, frames=10, batch_size=6, train=True, has=has, seed=1), as_dict):
        assert torch.equal(a.sequences, b.sequences)


def test_mean_feature_and_index_checks(tmp_path):
    index = write_index(tmp_path, [2, 4])
    np.testing.assert_allclose(mean_feature(index), [(1 + 6) / 6, 4 / 6, 4 / 6])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"classes": ["a"], "videos": [
        {"features": "v0.npy", "label": 1, "frames": 2, "segments": []}]}))
    with pytest.raises(ValueError, match="label=1"):
        FeatureIndex.load(str(bad))
    bad.write_text(json.dumps({"classes": ["a"], "videos": [
        {"features": "v0.npy", "label": 0, "frames": 2, "segments": [[1, 3]]}]}))
    with pytest.raises(ValueError, match="segments"):
        FeatureIndex.load(str(bad))
    bad.write_text("[" * 100_000 + "]" * 100_000)  # a RecursionError traceback
    with pytest.raises(ValueError, match="bad.json: not a JSON feature index .RecursionError"):
        FeatureIndex.load(str(bad))
    bad.write_text('{"classes": ["a"], "videos": [{"frames": ' + "1" * 5000 + "}]}")  # int digit limit, unnamed
    with pytest.raises(ValueError, match="bad.json: not a JSON feature index"):
        FeatureIndex.load(str(bad))
    bad.unlink()
    os.mkfifo(bad)  # read, it waited for a writer for ever (action-demo with a FIFO at DATA/train.json)
    with pytest.raises(ValueError, match="bad.json: not a regular file"):
        FeatureIndex.load(str(bad))


def write_raw_index(tmp_path, videos, classes=("a", "b")):
    path = tmp_path / "raw.json"
    path.write_text(json.dumps({"classes": list(classes), "videos": videos}))
    return str(path)


def video(features="v0.npy", label=0, frames=2, segments=((0, 1),)):
    return {"features": features, "label": label, "frames": frames, "segments": [list(s) for s in segments]}


@pytest.mark.parametrize("array, said", [
    (np.zeros((3, 2), np.float32), "frames=2, but .* holds 3 feature steps"),  # frames must be the rows
    (np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)), "Fortran order"),
    (np.zeros((2, 3), ">f4"), "little-endian"),
    (np.zeros((2, 3), np.complex64), "little-endian bool, integers or floats"),
    (np.zeros(2, np.float32), r"shape \(2,\); expected \[T, D\]"),
    (np.zeros((2, 3, 1), np.float32), r"shape \(2, 3, 1\)"),
    (np.zeros((0, 3), np.float32), "T >= 1"),
    (np.zeros((2, 0), np.float32), "D >= 1 features"),  # failed later, unnamed
])
def test_feature_files_dalis_decoder_would_misread_are_named_when_the_index_loads(tmp_path, array, said):
    # Each crashed inside DALI (an assert, or "CUDA driver version is insufficient" on a CPU machine) or, for a
    # wrong frames value, silently scaled every predicted segment.
    np.save(tmp_path / "v0.npy", array)
    with pytest.raises(ValueError, match=f"videos\\[0\\]: .*{said}"):
        FeatureIndex.load(write_raw_index(tmp_path, [video()]))


@pytest.mark.parametrize("damage, said", [(lambda data: data[:-4], "cut short"),
                                          (lambda data: data + bytes(8), "bytes after the array")])
def test_a_feature_file_of_another_size_than_its_header_says_is_named_when_the_index_loads(tmp_path, damage, said):
    """Both failed in DALI's decoder mid-epoch, naming no file (np.load reads the second without a word)."""
    np.save(tmp_path / "v0.npy", np.zeros((2, 3), np.float32))
    (tmp_path / "v0.npy").write_bytes(damage((tmp_path / "v0.npy").read_bytes()))
    with pytest.raises(ValueError, match=f"videos\\[0\\]: .*v0.npy holds .* bytes of data where its header .*{said}"):
        FeatureIndex.load(write_raw_index(tmp_path, [video()]))


@pytest.mark.parametrize("value, dtype", [(np.nan, np.float32), (np.inf, np.float16), (1e39, np.float64)])
def test_the_mean_feature_names_a_file_of_values_that_are_not_finite_in_float32(tmp_path, value, dtype):
    """It gave a NaN or infinite fill: NaN weights as a library, a 32-value fill error naming no file in the CLI."""
    np.save(tmp_path / "v0.npy", np.zeros((2, 3), dtype))
    bad = np.zeros((2, 3), dtype)
    bad[1, 2] = value
    np.save(tmp_path / "v1.npy", bad)
    index = FeatureIndex.load(write_raw_index(tmp_path, [video(), video(features="v1.npy")]))
    for check in (mean_feature, check_finite_features):  # the latter for a test index: its mAP came out wrong
        with pytest.raises(ValueError, match="v1.npy holds NaN, infinite or .* beyond float32's range"):
            check(index)


def test_a_fill_of_another_length_than_the_features_is_refused_when_the_loader_is_made(tmp_path):
    index = write_index(tmp_path, [4, 5])  # DIM = 3 features
    with pytest.raises(ValueError, match="fill has 2 values; the features of .* have 3"):
        loader(index, train=True, has=TemporalHaSConfig(segment=2, fill=(1.0, 2.0)))


def test_a_npy_of_format_2_or_a_pipe_is_named_when_the_index_loads(tmp_path):
    """Format 2.0 passed and failed in DALI ("Only major version 1 is supported"); a FIFO hung the loading."""
    with open(tmp_path / "v0.npy", "wb") as file:
        np.lib.format.write_array(file, np.zeros((2, 3), np.float32), version=(2, 0))
    with pytest.raises(ValueError, match=r"videos\[0\]: .*format version \(2, 0\); DALI's decoder reads version 1.0"):
        FeatureIndex.load(write_raw_index(tmp_path, [video()]))
    (tmp_path / "v0.npy").unlink()
    os.mkfifo(tmp_path / "v0.npy")
    with pytest.raises(ValueError, match=r"videos\[0\]: .*v0.npy is not a regular file"):
        FeatureIndex.load(write_raw_index(tmp_path, [video()]))


def test_feature_files_of_different_dtypes_are_named_when_the_index_loads(tmp_path):
    """DALI's numpy decoder stopped on the first batch mixing float16 and float32 files."""
    np.save(tmp_path / "v0.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "v1.npy", np.zeros((2, 3), np.float16))
    with pytest.raises(ValueError, match=r"videos\[1\]: .*v1.npy holds float16 features, the first video float32"):
        FeatureIndex.load(write_raw_index(tmp_path, [video(), video(features="v1.npy")]))


@pytest.mark.parametrize("change, said", [
    ({"classes": "ab"}, "'classes' must be a list"),  # a string became one class per letter
    ({"classes": ["a", "a"]}, "different, non-empty class names"),
    ({"videos": {}}, "'videos' must be a non-empty list"),
    ({"videos": [video(label=True)]}, "label=True"),  # bools are not numbers
    ({"videos": [video(frames=True)]}, "frames=True"),
    ({"videos": [video(segments=[(0, 1, 2)])]}, "pairs of numbers"),
    ({"videos": [video(segments=[("0", "1")])]}, "pairs of numbers"),
    ({"videos": [{**video(), "segments": 5}]}, "pairs of numbers"),
    ({"videos": [video(features=3)]}, "features=3"),
    ({"videos": [video(features="nope.npy")]}, "nope.npy: No such file"),
    ({"videos": [video(), video(features="v1.npy")]}, r"videos\[1\]: .*v1.npy has 4 features per step, the first "
                                                      "video 3"),
])
def test_index_entries_of_the_wrong_kind_are_named(tmp_path, change, said):
    np.save(tmp_path / "v0.npy", np.zeros((2, 3), np.float32))
    np.save(tmp_path / "v1.npy", np.zeros((2, 4), np.float32))
    raw = {"classes": ["a", "b"], "videos": [video()], **change}
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=said):
        FeatureIndex.load(str(path))


def test_an_index_that_is_not_json_or_has_a_name_dali_cannot_take_is_named(tmp_path):
    path = tmp_path / "index.json"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="index.json: not a JSON feature index"):
        FeatureIndex.load(str(path))
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match="index.json: not a JSON feature index"):
        FeatureIndex.load(str(path))
    name = b"caf\xe9.npy".decode("utf-8", "surrogateescape")  # a Latin-1 name on a Linux file system
    np.save(tmp_path / name, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="is not UTF-8"):
        FeatureIndex.load(write_raw_index(tmp_path, [video(features=name)]))


def test_a_loader_state_of_another_index_frames_or_hiding_is_refused(tmp_path):
    index = write_index(tmp_path, [4, 5, 6])
    has = TemporalHaSConfig(segment=2, p_hide=0.5)
    state = loader(index, train=True, has=has, checkpointing=True, seed=0).state_dict()
    loader(index, train=True, has=has, checkpointing=True, seed=0).load_state_dict(state)  # the same: taken
    reordered = tmp_path / "reordered.json"
    raw = json.loads(Path(index.path).read_text())
    reordered.write_text(json.dumps({**raw, "videos": raw["videos"][::-1]}))
    for other, differs in [(dict(index=FeatureIndex.load(str(reordered))), "files"), (dict(frames=7), "frames"),
                           (dict(has=None), "has"), (dict(has=TemporalHaSConfig(segment=3, p_hide=0.5)), "has")]:
        kwargs = {"index": index, "train": True, "has": has, "checkpointing": True, "seed": 0, **other}
        with pytest.raises(ValueError, match=f"other settings: {differs} "):
            loader(kwargs.pop("index"), **kwargs).load_state_dict(state)


def test_a_header_longer_than_numpy_reads_safely_is_one_line_without_numpys_advice(tmp_path):
    """numpy's message went on over three lines to suggest allow_pickle=True, which this project never does."""
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" + b" " * 60_000 + b"\n"
    (tmp_path / "v0.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
                                      + bytes(24))
    with pytest.raises(ValueError) as error:
        FeatureIndex.load(write_raw_index(tmp_path, [video()]))
    assert "v0.npy is not a .npy file" in str(error.value) and "\n" not in str(error.value)
    assert "allow_pickle" not in str(error.value)
