"""The image pipelines' reader: decoded pixels (.npy) read by fn.readers.numpy with labels found by file name,
or by fn.readers.file (the fallback) - the same samples, labels and order either way."""
import numpy as np
import pytest
from nvidia.dali import pipeline_def

from dali_has import fused
from pipelines import reader
from pipelines.reader import read_pixels


@pytest.fixture(scope="module")
def pixel_files(tmp_path_factory):
    """Twelve .npy images whose pixels are all their index, of different sizes; labels 100 + index % 5."""
    root = tmp_path_factory.mktemp("pixels")
    names = [f"{i:02d}.npy" for i in range(12)]
    for i, name in enumerate(names):
        np.save(root / name, np.full((4 + i, 6, 3), i, np.uint8))
    return root, names, [100 + i % 5 for i in range(12)]


def read(root, names, labels, *, shard_id=0, num_shards=1, batch_size=4, batches=6):
    """(index, label, layout) per sample of `batches` batches of read_pixels, shuffled, and the serialized graph."""
    @pipeline_def(batch_size=batch_size, num_threads=2, device_id=None, seed=5)
    def pipe():
        return read_pixels(files=names, labels=labels, file_root=str(root), name="Reader", shard_id=shard_id,
                           num_shards=num_shards, stick_to_shard=True, pad_last_batch=True, random_shuffle=True,
                           initial_fill=8)

    p = pipe()
    p.build()
    samples = []
    for _ in range(batches):
        images, found = p.run()
        assert images.layout() == "HWC" and found.dtype.name == "INT64"
        samples += [(int(np.array(image)[0, 0, 0]), int(np.array(label))) for image, label in zip(images, found)]
    return samples, p.serialize()


@pytest.mark.fused
def test_pixels_are_read_by_the_numpy_reader_and_match_the_fallback(pixel_files, monkeypatch):
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")
    root, names, labels = pixel_files
    shards = []
    for shard_id in (0, 1):
        numpy_read, graph = read(root, names, labels, shard_id=shard_id, num_shards=2)
        assert b"readers__Numpy" in graph and b"readers__File" not in graph
        with monkeypatch.context() as patch:
            patch.setattr(reader, "one_label_per_name", lambda names, labels: False)
            file_read, graph = read(root, names, labels, shard_id=shard_id, num_shards=2)
        assert b"readers__File" in graph and b"readers__Numpy" not in graph
        assert numpy_read == file_read
        assert all(label == labels[index] for index, label in numpy_read)
        shards.append({index for index, _ in numpy_read})
    assert len(shards[0]) == len(shards[1]) == 6 and shards[0] | shards[1] == set(range(12))  # each its half


def test_a_file_listed_twice_with_two_labels_keeps_both(pixel_files):
    # A name cannot find two labels: such a list goes to fn.readers.file, which labels each entry.
    root, names, _ = pixel_files
    samples, graph = read(root, [names[0], names[0], names[1]], [1, 2, 3], batch_size=3, batches=2)
    assert b"readers__File" in graph
    assert sorted(samples) == [(0, 1), (0, 1), (0, 2), (0, 2), (1, 3), (1, 3)]
