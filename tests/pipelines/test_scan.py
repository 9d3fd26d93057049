"""`pipelines.scan` on a tree holding every kind of bad file; its file list must load and decode in DALI."""
import io
import os

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types
from PIL import Image

from pipelines.files import list_folder, read_file_list, write_file_list
from pipelines.scan import scan_dataset
from tests.pipelines.bad_images import jpeg_bytes, make_bad_tree


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan") / "data"
    return root, make_bad_tree(root)


def found(report):
    problems = {}
    for p in report.problems:
        problems.setdefault(p.path, set()).add((p.severity, p.kind))
    return problems


def decode_all(list_path):
    """Decode one epoch of a file list with DALI's CPU decoder; returns the number of images."""

    @pipeline_def(batch_size=4, num_threads=1, device_id=None)
    def decode():
        encoded, labels = fn.readers.file(file_list=str(list_path), pad_last_batch=True, name="reader")
        return fn.decoders.image(encoded, device="cpu", output_type=types.RGB), labels

    pipe = decode()
    pipe.build()
    size = pipe.epoch_size("reader")
    for _ in range(0, size, 4):
        images, _ = pipe.run()
        assert all(np.asarray(im).shape[2] == 3 for im in images)
    return size


@pytest.mark.parametrize("batch_size", [64, 3])  # 3: bad files spread over several failing batches
def test_every_file_judged(bad_tree, batch_size):
    root, expected = bad_tree
    report = scan_dataset(root, batch_size=batch_size, num_threads=2, progress=False)
    assert found(report) == {name: kinds for name, kinds in expected.items() if kinds}
    unusable = {name for name, kinds in expected.items() if any(sev == "error" for sev, _ in kinds)}
    assert report.unusable == unusable
    assert [p.relative_to(root).as_posix() for p, _ in report.usable_samples()] == [
        name for name, _ in list_folder(root).samples if name not in unusable]


def test_messages_say_what_is_wrong(bad_tree):
    root, _ = bad_tree
    messages = {p.path: p.message for p in scan_dataset(root, progress=False).problems}
    assert messages["good/png.jpg"] == "is a PNG file named .jpg"
    assert "is a GIF file named .jpg" in messages["bad/gif.jpg"]
    assert "65535x65535" in messages["bad/side65535.jpg"]
    assert "40x0" in messages["bad/height0.jpg"]
    assert "30000x30000" in messages["bad/bomb.jpg"]
    assert "truncated" in messages["bad/no-eoi.jpg"]
    assert "0 bytes" in messages["bad/zero.jpg"]


def test_written_list_loads_and_decodes_in_dali(bad_tree, tmp_path):
    root, expected = bad_tree
    report = scan_dataset(root, progress=False)
    list_path = root / "usable.txt"
    count = write_file_list(list_path, report.usable_samples())
    assert count == len(expected) - len(report.unusable)
    assert decode_all(list_path) == count
    assert {name for name, _ in read_file_list(list_path).samples}.isdisjoint(report.unusable)


def test_scans_a_file_list(bad_tree, tmp_path):
    root, _ = bad_tree
    list_path = tmp_path / "some.txt"
    write_file_list(list_path, [(root / "bad/text.jpg", 0), (root / "good/plain.jpg", 1)])
    report = scan_dataset(list_path, progress=False)
    assert report.unusable == {str(root / "bad/text.jpg")}  # written absolute: outside the list's folder


def test_cmyk_decodes_like_pil(bad_tree):
    # The cmyk warning says DALI converts CMYK as PIL does: hold it to that.
    root, _ = bad_tree
    data = (root / "good/cmyk.jpg").read_bytes()

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def decode():
        return fn.decoders.image(fn.external_source(name="x", dtype=types.UINT8, ndim=1), output_type=types.RGB)

    pipe = decode()
    pipe.build()
    pipe.feed_input("x", [np.frombuffer(data, np.uint8)])
    dali = np.asarray(pipe.run()[0][0])
    assert np.array_equal(dali, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


@pytest.mark.parametrize("args, message", [({"batch_size": 0}, "batch_size"), ({"num_threads": 1.5}, "num_threads")])
def test_validates_parameters(bad_tree, args, message):
    with pytest.raises(ValueError, match=message):
        scan_dataset(bad_tree[0], progress=False, **args)


def test_many_unknown_files_in_one_batch(tmp_path):
    # DALI 2.4's decoder segfaulted (most runs) on a batch of 64 holding such files; the listing check refuses them.
    for i in range(40):
        (tmp_path / "c" / f"{i:02d}.jpg").parent.mkdir(exist_ok=True)
        (tmp_path / "c" / f"{i:02d}.jpg").write_bytes(b"text" if i % 2 else jpeg_bytes())
    report = scan_dataset(tmp_path, batch_size=64, progress=False)
    assert report.unusable == {f"c/{i:02d}.jpg" for i in range(1, 40, 2)}


def test_links_to_special_files_are_reported_without_reading_them(tmp_path):
    # Before: a link to /dev/zero made scan read until memory ran out, a link to a FIFO made it wait forever.
    root = tmp_path / "data"
    (root / "c").mkdir(parents=True)
    (root / "c/good.jpg").write_bytes(jpeg_bytes())
    (root / "c/zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo")
    (root / "c/fifo.jpg").symlink_to(tmp_path / "fifo")
    report = scan_dataset(root, progress=False)
    assert found(report) == {"c/zero.jpg": {("error", "not-a-file")}, "c/fifo.jpg": {("error", "not-a-file")}}
    assert report.unusable == {"c/zero.jpg", "c/fifo.jpg"}


def test_decoded_pixels_are_left_to_the_listing_check(tmp_path):
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "0.npy", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"holds decoded pixels \(.npy files\): scan checks encoded images"):
        scan_dataset(tmp_path, progress=False)
