"""Dataset listing and DALI file lists, checked against DALI's own `fn.readers.file`."""
import ast
import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from nvidia.dali import backend, fn, pipeline_def

from pipelines import ImageOptions, PipelineOptions, reader
from pipelines.files import (
    DALI_FILE_FILTERS,
    IMAGE_FILTERS,
    PREPARE_MANIFEST,
    data_kind,
    list_folder,
    load_dataset,
    preparation,
    read_file_list,
    stores_pixels,
    write_file_list,
)
from tests.pipelines.bad_images import jpeg_bytes


def dali_reads(**reader_args):
    """(source path, label, bytes) of every sample of one epoch of `fn.readers.file(**reader_args)`."""

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def read():
        data, label = fn.readers.file(**reader_args, name="reader")
        return data, label

    pipe = read()
    pipe.build()
    samples = []
    for _ in range(pipe.epoch_size("reader")):
        data, label = pipe.run()
        samples.append((data[0].source_info(), int(np.asarray(label[0]).item()), np.asarray(data[0]).tobytes()))
    return samples


def write(path, data=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if data is not None else os.fsencode(str(path)))  # unique content per file


@pytest.fixture
def tree(tmp_path):
    """Class names and file names that expose the ordering, filtering and case rules."""
    root = tmp_path / "data"
    for name in ["b/2.jpg", "b/10.jpg", "b/B.png", "b/a.JPG", "b/x.Jpeg", "b/notes.txt", "b/anim.gif",
                 "B/one.jpg", "a b/with space.jpg", "_u/é.jpg", "_u/e.jpg", "_u/z.jpg", ".hidden/h.jpg",
                 "10/x.bmp", "9/x.webp", "b/sub/deep.jpg", "top.jpg", "b/.dot.jpg", "b/sound.WAV"]:
        write(root / name)
    (root / "empty").mkdir()  # a class folder without images still takes a label in DALI
    (root / "b" / "dir.jpg").mkdir()  # a folder named like an image is not a file
    (root / "c-link").symlink_to(root / "B")  # symlinked class folders and files are followed
    (root / "B" / "link.jpg").symlink_to(root / "b" / "2.jpg")
    return root


def test_default_filters_are_dalis():
    schema = backend.GetSchema("readers__File")
    assert tuple(ast.literal_eval(schema.GetArgumentDefaultValueString("file_filters"))) == DALI_FILE_FILTERS


def test_image_filters_are_the_loaders(tree):
    # One listing: the loader's reader reads exactly what list_folder lists (scan and mean list the same way).
    listed = list_folder(tree)
    for path in listed.paths():
        path.write_bytes(jpeg_bytes())  # images, so that the listing check accepts every file
    kwargs = reader.reader_kwargs(PipelineOptions(batch_size=1), ImageOptions(data=str(tree)), shuffle=False)
    assert list(zip(kwargs["files"], kwargs["labels"])) == list(listed.samples)
    assert set(DALI_FILE_FILTERS) - set(IMAGE_FILTERS) == {"*.flac", "*.ogg", "*.wav"}


def test_default_filter_listing_matches_dali_defaults(tree):
    dataset = list_folder(tree, file_filters=DALI_FILE_FILTERS)
    assert [(name, label) for name, label, _ in dali_reads(file_root=str(tree))] == list(dataset.samples)
    assert ("b/sound.WAV", 6) in dataset.samples


def test_folder_listing_matches_dali_reader(tree):
    dataset = list_folder(tree)
    read = dali_reads(file_root=str(tree), file_filters=list(IMAGE_FILTERS))
    assert [(name, label) for name, label, _ in read] == list(dataset.samples)
    # The rules the comparison exercises, spelled out:
    assert dataset.classes == (".hidden", "10", "9", "B", "_u", "a b", "b", "c-link", "empty")
    assert [name for name, _ in dataset.samples if name.startswith("b/")] == [
        "b/.dot.jpg", "b/10.jpg", "b/2.jpg", "b/B.png", "b/a.JPG", "b/x.Jpeg"]
    assert dataset.samples[-1] == ("c-link/one.jpg", 7)
    assert [name for name, _ in dataset.samples if name.startswith("_u/")] == ["_u/e.jpg", "_u/z.jpg", "_u/é.jpg"]


def test_file_list_round_trip_loads_in_dali(tmp_path, tree):
    dataset = list_folder(tree)
    outside = tmp_path / "elsewhere" / "far.jpg"
    write(outside)
    samples = [(tree / name, label) for name, label in dataset.samples] + [(outside, 3)]
    list_path = tree / "train.txt"  # in the root, not in a class folder: not part of the tree's listing
    assert write_file_list(list_path, samples) == len(samples)

    lines = list_path.read_text().splitlines()
    assert lines[0] == ".hidden/h.jpg 0"  # inside the list's folder: relative to it
    assert lines[-1] == f"{outside} 3"  # outside the list's folder: absolute

    loaded = read_file_list(list_path)
    assert loaded.root == tree
    assert loaded.paths() == [p for p, _ in samples]
    assert [label for _, label in loaded.samples] == [label for _, label in samples]
    # DALI resolves the same names against the list's folder and reads the same bytes.
    read = dali_reads(file_list=str(list_path))
    assert [(label, data) for _, label, data in read] == [(label, p.read_bytes()) for p, label in samples]


def test_relative_names_next_to_the_list(tmp_path, monkeypatch):
    for name in ["c/x 1.jpg", "c/y.jpg"]:
        write(tmp_path / "set" / name)
    list_path = tmp_path / "set" / "list.txt"
    monkeypatch.chdir(tmp_path)  # relative input paths are relative to the working directory
    write_file_list("set/list.txt", [("set/c/x 1.jpg", 7), (tmp_path / "set/c/y.jpg", 0)])
    assert list_path.read_text() == "c/x 1.jpg 7\nc/y.jpg 0\n"
    monkeypatch.chdir("/")
    assert [(name, label) for name, label, _ in dali_reads(file_list=str(list_path))] == [("c/x 1.jpg", 7),
                                                                                          ("c/y.jpg", 0)]


def test_list_parsing_follows_dali(tmp_path):
    for name in ["a 12.jpg", "b.jpg"]:
        write(tmp_path / name)
    list_path = tmp_path / "list.txt"
    list_path.write_text("a 12.jpg\t 3  \r\n\n   \nb.jpg 0010\n")
    expected = [("a 12.jpg", 3), ("b.jpg", 10)]
    assert list(read_file_list(list_path).samples) == expected
    assert [(name, label) for name, label, _ in dali_reads(file_list=str(list_path))] == expected


def test_load_dataset_takes_folder_or_list(tmp_path, tree):
    assert load_dataset(tree) == list_folder(tree)
    write_file_list(tmp_path / "l.txt", [(tree / "b/2.jpg", 1)])
    assert load_dataset(tmp_path / "l.txt").samples == (("data/b/2.jpg", 1),)


@pytest.mark.parametrize("layout, message", [
    ({}, "has no class folders"),
    ({"top.jpg": b"x"}, "has no class folders"),
    ({"cls/readme.txt": b"x", "other/": None}, "2 class folder(s) but no image files"),
])
def test_folder_errors_name_the_folder(tmp_path, layout, message):
    root = tmp_path / "ds"
    root.mkdir()
    for name, data in layout.items():
        (root / name).mkdir() if data is None else write(root / name, data)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        list_folder(root)
    assert str(root) in str(error.value)


def test_broken_symlink_in_root(tmp_path):
    write(tmp_path / "c/x.jpg")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="broken symlink .*gone"):
        list_folder(tmp_path)


def test_missing_folder_or_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        list_folder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_file_list(tmp_path / "nope.txt")


@pytest.mark.parametrize("line", ["just-a-name.jpg", "x.jpg -1", "x.jpg label", "7", "x.jpg 1.5"])
def test_malformed_list_line(tmp_path, line):
    write(tmp_path / "x.jpg")
    list_path = tmp_path / "list.txt"
    list_path.write_text(f"x.jpg 0\n{line}\n")
    with pytest.raises(ValueError, match=r"list.txt' line 2: expected 'path label'"):
        read_file_list(list_path)


def test_old_mac_line_ends_are_named_not_read_as_one_name(tmp_path):
    # "a.jpg 0\rb.jpg 1" was one entry named "a.jpg 0\rb.jpg", reported as a missing file
    write(tmp_path / "a.jpg")
    write(tmp_path / "b.jpg")
    (tmp_path / "list.txt").write_bytes(b"a.jpg 0\rb.jpg 1\r")
    with pytest.raises(ValueError, match=r"line 1: a carriage return inside the line; .*CR-only"):
        read_file_list(tmp_path / "list.txt")


def test_listed_file_missing(tmp_path):
    list_path = tmp_path / "list.txt"
    list_path.write_text("gone.jpg 0\n")
    with pytest.raises(FileNotFoundError, match="list.txt' entry 1: listed file 'gone.jpg' not found"):
        read_file_list(list_path)


def test_a_stat_that_fails_otherwise_than_with_a_name_too_long_is_not_called_missing(tmp_path, monkeypatch):
    """Every OSError of the lookup was reported as "not found", a permission denied too."""
    list_path = tmp_path / "list.txt"
    list_path.write_text("a.jpg 0\n")

    stat = Path.stat

    def denied(self, *args, **kwargs):  # this machine runs as root: no chmod is denied to it
        if self.name == "a.jpg":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", denied)
    with pytest.raises(PermissionError, match="Permission denied"):
        read_file_list(list_path)


def test_empty_list(tmp_path):
    (tmp_path / "list.txt").write_text("\n")
    with pytest.raises(ValueError, match="lists no files"):
        read_file_list(tmp_path / "list.txt")


@pytest.mark.parametrize("sample, message", [
    (("a.jpg", -1), "label -1"), (("a.jpg", 1.0), "label 1.0"), (("a.jpg", True), "label True"),
    (("a\nb.jpg", 0), "newline"), (("a.jpg ", 0), "trailing space"), (("", 0), "cannot be written"),
])
def test_write_rejects_what_dali_cannot_read(tmp_path, sample, message):
    with pytest.raises(ValueError, match=message):
        write_file_list(tmp_path / "list.txt", [sample])


def test_a_dataset_holds_decoded_pixels_or_encoded_images_not_both(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0.npy").write_bytes(b"")
    assert stores_pixels(list_folder(tmp_path))
    (tmp_path / "a" / "1.JPG").write_bytes(b"")
    with pytest.raises(ValueError, match=r"mixes decoded pixels \('a/0.npy'\) with encoded images \('a/1.JPG'\)"):
        stores_pixels(list_folder(tmp_path))
    (tmp_path / "a" / "0.npy").unlink()
    assert not stores_pixels(list_folder(tmp_path))


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    """Windows editors start a UTF-8 file with one; it was read as the start of the first file's name."""
    write(tmp_path / "a.jpg")
    list_path = tmp_path / "list.txt"
    list_path.write_bytes("\ufeffa.jpg 1\n".encode())
    assert list(read_file_list(list_path).samples) == [("a.jpg", 1)]


def test_a_prepare_output_is_read_only_when_finished_and_holding_images(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "0.jpg").write_bytes(jpeg_bytes())
    manifest = tmp_path / PREPARE_MANIFEST
    for complete in (False, "false", 0, None):  # prepare writes false, then true; a hand edit is not true either
        manifest.write_text(json.dumps({"complete": complete, "classes": ["c"]}))
        with pytest.raises(ValueError, match=f"unfinished .*\"complete\": {re.escape(json.dumps(complete))}"):
            data_kind(tmp_path)
    manifest.write_text(json.dumps({"complete": True, "prepared": 0, "samples": 3, "source": "/src"}))
    with pytest.raises(ValueError, match="holds no image: .* left out all 3 files of '/src'"):
        data_kind(tmp_path)  # was "no class folders"
    manifest.unlink()
    os.mkfifo(manifest)  # reading it waited for ever
    assert data_kind(tmp_path) == "folder" and preparation(tmp_path) is None


def test_an_empty_hidden_folder_is_no_class(tmp_path):
    """Jupyter's `.ipynb_checkpoints` sorted first and became class 0: every label shifted by one, silently."""
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "0.jpg").write_bytes(jpeg_bytes())
    (tmp_path / ".ipynb_checkpoints").mkdir()
    with pytest.raises(ValueError, match="hidden folder '.ipynb_checkpoints' holds no image.*class 0.*move it out"):
        list_folder(tmp_path)
    (tmp_path / ".ipynb_checkpoints" / "0.jpg").write_bytes(jpeg_bytes())  # one with images is a class, as in DALI
    assert list_folder(tmp_path).classes == (".ipynb_checkpoints", "cat", "dog")
