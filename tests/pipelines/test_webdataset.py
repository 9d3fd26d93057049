"""WebDataset shards: the format (keys, labels, DALI's own index tool agrees with ours) and the round trip through
make_loader (every sample exactly once per epoch, per rank, with its label), for each way of naming the shards."""
from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import UnreadableImageError, file_check, make_loader, webdataset
from pipelines.files import (
    FILE_LIST,
    FOLDER,
    PREPARE_MANIFEST,
    WEBDATASET,
    data_kind,
    dataset_labels,
    list_shards,
    num_classes,
    preparation,
)
from pipelines.webdataset import ShardWriter, encode_label, index_path, read_index, read_labels, sample_key, sample_name
from tests.pipelines.bad_images import undecodable_jpeg

N = 23  # over 3 shards of 8, 8 and 7 samples
CROP = 16


def jpeg(i: int) -> bytes:
    pixels = np.random.default_rng(i).integers(0, 256, (20 + i, 30 - i // 2, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """3 shards; sample i has label 1000 + i, so labels identify samples."""
    folder = tmp_path_factory.mktemp("wds")
    for s, start in enumerate(range(0, N, 8)):
        writer = ShardWriter(folder / f"part-{s}.tar")
        for i in range(start, min(start + 8, N)):
            writer.add(sample_key(f"class {i % 2}/img.{i}.png"), jpeg(i), 1000 + i)
        writer.close()
    return folder


def test_keys_escape_what_webdataset_and_dali_index_lines_would_split_on():
    for name in ("a/b.jpg", "cls 1/im.g.v2.JPEG", "x%20y/z\tw.png", "ünï/çødé.jpg", "noext"):
        key = sample_key(name)
        assert "." not in key and " " not in key and "\t" not in key
        assert sample_name(key) == (name.rsplit(".", 1)[0] if "." in name else name)
    assert sample_key("n0144/n0144_10026.JPEG") == "n0144/n0144_10026"  # plain names stay readable


def test_labels_are_ten_ascii_digits_and_bad_ones_are_named():
    assert encode_label(3) == b"0000000003" and int(encode_label(2**31 - 1)) == 2**31 - 1
    for bad in (-1, 2**31, True, 1.0):
        with pytest.raises(ValueError, match="label"):
            encode_label(bad)


def test_our_index_is_what_dalis_wds2idx_writes(shards, tmp_path):
    wds2idx = pytest.importorskip("wds2idx", reason="DALI's index tool is not installed")
    for shard in list_shards(shards):
        with wds2idx.IndexCreator(str(shard), str(tmp_path / "ref.idx"), verbose=False) as creator:
            creator.create_index()
        assert index_path(shard).read_text() == (tmp_path / "ref.idx").read_text()


def test_labels_are_read_through_the_index(shards):
    first = list_shards(shards)[0]
    entries = read_index(first)
    assert [sample_name(e.key) for e in entries][:2] == ["class 0/img.0", "class 1/img.1"]
    assert read_labels(first, entries) == list(range(1000, 1008))
    assert dataset_labels(shards) == [1000 + i for i in range(N)]
    assert num_classes(shards) == 1000 + N


def epoch_labels(loader) -> list[int]:
    batches = [labels for _, labels in loader]
    assert all(len(b) == loader.batch_size for b in batches[:-1])  # only the last batch is partial
    return torch.cat(batches).tolist()


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("num_shards,batch_size", [(1, 4), (2, 3), (3, 5)])
def test_every_sample_once_per_epoch_on_every_rank_with_its_label(shards, train, num_shards, batch_size):
    seen = []
    for rank in range(num_shards):
        loader = make_loader(shards, train=train, batch_size=batch_size, crop=CROP, num_threads=1, seed=0,
                             shard_id=rank, num_shards=num_shards)
        assert loader.dataset_size == N
        first = epoch_labels(loader)
        assert len(first) == len(set(first)) == loader.num_samples
        for _ in range(2):  # later epochs: the same samples (stick_to_shard), reshuffled when training
            assert sorted(epoch_labels(loader)) == sorted(first)
        seen += first
    assert sorted(seen) == [1000 + i for i in range(N)]


def test_images_come_out_as_the_pipeline_promises(shards):
    images, labels = next(iter(make_loader(shards, train=True, batch_size=4, crop=CROP, num_threads=1,
                                           layout="NHWC")))
    assert images.shape == (4, CROP, CROP, 3) and images.dtype == torch.float32 and labels.dtype == torch.int64
    # Validation decodes whole images in stored order: the first is sample 0, its pixels those of the JPEG.
    images, labels = next(iter(make_loader(shards, train=False, batch_size=2, crop=CROP, num_threads=1)))
    assert labels.tolist() == [1000, 1001]


def test_shards_given_as_a_folder_a_list_or_one_tar(shards):
    tars = list_shards(shards)
    assert [t.name for t in tars] == ["part-0.tar", "part-1.tar", "part-2.tar"]
    assert data_kind(shards) == data_kind([str(t) for t in tars]) == data_kind(tars[0]) == WEBDATASET
    two = make_loader([str(t) for t in tars[1:]], train=False, batch_size=8, crop=CROP, num_threads=1)
    assert epoch_labels(two) == [1000 + i for i in range(8, N)]
    one = make_loader(str(tars[2]), train=False, batch_size=8, crop=CROP, num_threads=1)
    assert epoch_labels(one) == [1000 + i for i in range(16, N)]


def test_data_kinds_and_their_errors(shards, tmp_path):
    (tmp_path / "tree" / "cls").mkdir(parents=True)
    (tmp_path / "list.txt").write_text("cls/a.jpg 0\n")
    assert data_kind(tmp_path / "tree") == FOLDER and data_kind(tmp_path / "list.txt") == FILE_LIST
    mixed = tmp_path / "mixed"
    (mixed / "cls").mkdir(parents=True)
    (mixed / "x.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="both .tar shards and sub-folders"):
        data_kind(mixed)
    (tmp_path / "lonely.tar").write_bytes((shards / "part-0.tar").read_bytes())
    with pytest.raises(FileNotFoundError, match="no index.*wds2idx"):
        make_loader(tmp_path / "lonely.tar", train=True, batch_size=2)
    with pytest.raises(ValueError, match="does not exist"):
        make_loader([str(tmp_path / "missing.tar")], train=True, batch_size=2)
    with pytest.raises(ValueError, match="WebDataset.*needs the image files"):
        from pipelines.files import load_dataset

        load_dataset(shards)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "s.tar").write_bytes((shards / "part-0.tar").read_bytes())
    (broken / "s.idx").write_text("v1.2 5\njpg 512 10 a.jpg\n")
    with pytest.raises(ValueError, match="not a DALI v1.2 index of 1 samples"):
        read_index(broken / "s.tar")
    for line in ("jpg -512 10 a.jpg cls 1024 10 a.cls", "jpg 512 x a.jpg cls 1024 10 a.cls"):
        (broken / "s.idx").write_text(f"v1.2 1\n{line}\n")
        with pytest.raises(ValueError, match="line 2 .*whole numbers of bytes"):
            read_index(broken / "s.tar")


def own_shard(folder, bad: bytes, samples: int = 6, at: int = 3):
    """A shard made elsewhere (not by prepare) whose sample `at` is `bad`."""
    writer = ShardWriter(folder / "own.tar")
    for i in range(samples):
        writer.add(sample_key(f"img{i}.jpg"), bad if i == at else jpeg(i % 6), i % 6)
    writer.close()


@pytest.mark.parametrize("bad", ["text", "cut"])
def test_shards_holding_a_sample_the_decoder_must_not_see_are_refused_when_listed(tmp_path, monkeypatch, bad):
    """A text sample in a batch of 64 killed the process (SIGSEGV, as a text file named .jpg did before the
    listing check); a JPEG cut short stopped the epoch with DALI's raw error."""
    own_shard(tmp_path, b"not an image\n" if bad == "text" else jpeg(3)[:300], samples=64, at=1)
    named = r"(?s)img1 \(byte \d+\).*dali-has prepare --webdataset"
    for skip in (False, True):  # a shard's samples cannot be left out
        with pytest.raises(UnreadableImageError, match=named) as error:
            make_loader(tmp_path, train=True, batch_size=64, crop=CROP, num_threads=2, seed=0, skip_bad_files=skip)
        assert error.value.paths == [str(tmp_path / "own.tar")]
    # The verdict is cached by the shard's size and modification time: the next listing reads no sample.
    monkeypatch.setattr(file_check, "check_shard", lambda path: pytest.fail("checked again"))
    with pytest.raises(UnreadableImageError):
        make_loader(tmp_path, train=True, batch_size=64, crop=CROP, num_threads=2, seed=0)


def test_a_shard_cut_short_is_refused_when_listed(tmp_path):
    own_shard(tmp_path, jpeg(3), samples=6, at=0)
    tar = tmp_path / "own.tar"
    entry = read_index(tar)[-1]
    tar.write_bytes(tar.read_bytes()[:entry.image_offset + entry.image_size // 2])
    with pytest.raises(UnreadableImageError, match="img5 .* lies past the shard's end"):
        make_loader(tmp_path, train=False, batch_size=2, crop=CROP, num_threads=1)


def webdataset_shard(path, labels: list[bytes]):
    """A shard as WebDataset's own tools write it: labels as plain text (b"3"), an index as wds2idx would."""
    with tarfile.open(path, "w") as tar:
        for i, label in enumerate(labels):
            for ext, data in (("jpg", jpeg(i)), ("cls", label)):
                info = tarfile.TarInfo(f"s{i}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tar:
        members = [f"{m.name.split('.')[1]} {m.offset_data} {m.size} {m.name}" for m in tar.getmembers()]
    lines = [f"{members[k]} {members[k + 1]}" for k in range(0, len(members), 2)]
    index_path(path).write_text(f"v1.2 {len(labels)}\n" + "\n".join(lines) + "\n")


def test_labels_and_indexes_the_graph_cannot_read_are_refused_when_listed(tmp_path):
    webdataset_shard(tmp_path / "plain.tar", [b"3", b"1"])  # read as 3333333333 and 1111111111 before
    with pytest.raises(ValueError, match="sample 's0': the label is b'3', expected 10 ASCII digits"):
        make_loader(tmp_path, train=False, batch_size=2, crop=CROP, num_threads=1)
    webdataset_shard(tmp_path / "plain.tar", [b"0000000003\n"])  # a member of 11 bytes: 11 places
    with pytest.raises(ValueError, match="expected 10 ASCII digits"):
        make_loader(tmp_path, train=False, batch_size=2, crop=CROP, num_threads=1)
    index_path(tmp_path / "plain.tar").write_text("v1.2 0\n")
    with pytest.raises(ValueError, match="lists no samples.*remove"):
        make_loader(tmp_path, train=False, batch_size=2, crop=CROP, num_threads=1)
    index_path(tmp_path / "plain.tar").write_bytes(b"v1.2 1\njpg 512 10 \xff.jpg cls 1024 10 \xff.cls\n")
    with pytest.raises(ValueError, match="plain.idx' is not UTF-8"):
        make_loader(tmp_path, train=False, batch_size=2, crop=CROP, num_threads=1)


def test_a_rewritten_index_is_checked_again(tmp_path):
    webdataset_shard(tmp_path / "s.tar", [b"0000000001", b"0000000002"])
    make_loader(tmp_path, train=False, batch_size=2, crop=CROP, num_threads=1)  # checked and cached
    index = index_path(tmp_path / "s.tar")
    first, second = index.read_text().splitlines()[1:]
    label_offset = first.split()[5]
    index.write_text(f"v1.2 2\n{first}\n" + second.replace(second.split()[1], label_offset, 1) + "\n")
    later = index.stat().st_mtime_ns + 10**9
    os.utime(index, ns=(later, later))
    with pytest.raises(ValueError, match="s.idx' lists the member at byte .* twice"):  # s1's image is s0's label
        make_loader(tmp_path, train=False, batch_size=2, crop=CROP, num_threads=1)


def test_a_sample_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    own_shard(tmp_path, jpeg(3), samples=2, at=0)
    monkeypatch.setattr(file_check, "MAX_FILE_BYTES", len(jpeg(3)) - 1)
    reads = []
    monkeypatch.setattr(file_check.os, "pread", lambda fd, n, at: reads.append(n) or b"")
    verdict = file_check.check_shard(tmp_path / "own.tar")
    assert verdict.kind == "bad-samples" and "img0 " in verdict.detail and "it is not read" in verdict.detail
    assert len(jpeg(3)) not in reads


@pytest.mark.parametrize("train", [False, True])
def test_a_sample_that_does_not_decode_is_named_by_shard_and_key(tmp_path, train):
    # A sample whose header and end are fine passes the listing check; it stops the epoch with its name.
    own_shard(tmp_path, undecodable_jpeg(jpeg(3)))
    loader = make_loader(tmp_path, train=train, batch_size=2, crop=CROP, num_threads=1, seed=0)
    with pytest.raises(UnreadableImageError) as error:
        epoch_labels(loader)
    (path,) = error.value.paths
    assert path.startswith(str(tmp_path / "own.tar") + ":") and path.endswith(sample_key("img3.jpg") + ".jpg")
    assert "dali-has prepare --webdataset" in str(error.value) and "C++ context" not in str(error.value)


def test_a_batch_larger_than_the_shards_hold_builds_the_pipeline_for_them(shards):
    loader = make_loader(shards, train=True, batch_size=4096, crop=CROP, num_threads=1, num_shards=2)
    assert loader.batch_size == loader.pipeline.max_batch_size == -(-N // 2)


def test_a_loader_made_after_its_shard_was_rewritten_reads_the_new_samples(tmp_path):
    """DALI maps a shard once per process and path: a second loader read the first one's mapping of the old
    tar at the new index's offsets (a decode error, or other samples)."""
    def write(base: int):
        writer = ShardWriter(tmp_path / "s.tar")
        for i in range(8):
            writer.add(sample_key(f"img{i}.jpg"), jpeg(i + base // 25), base + i)
        writer.close()

    write(0)
    first = make_loader(tmp_path, train=False, batch_size=8, crop=CROP, num_threads=1)
    assert epoch_labels(first) == list(range(8))
    write(100)  # a new file renamed into place, as prepare writes it; the first loader still holds the old one
    second = make_loader(tmp_path, train=False, batch_size=8, crop=CROP, num_threads=1)
    assert epoch_labels(second) == list(range(100, 108))
    assert epoch_labels(first) == list(range(8))


def test_what_a_shard_folder_would_skip_or_repeat_silently_is_refused(shards, tmp_path):
    def folder(name: str, *tars: str) -> Path:
        made = tmp_path / name
        made.mkdir()
        for tar in tars:
            (made / tar).write_bytes((shards / "part-0.tar").read_bytes())
            index_path(made / tar).write_bytes(index_path(shards / "part-0.tar").read_bytes())
        return made

    orphan = folder("orphan", "a.tar", "b.tar")
    (orphan / "b.tar").unlink()  # a copy cut short: its samples were skipped
    with pytest.raises(FileNotFoundError, match="b.idx' has no shard 'b.tar'.*shard is missing"):
        make_loader(orphan, train=False, batch_size=2, crop=CROP)
    dangling = folder("dangling", "a.tar")
    (dangling / "b.tar").symlink_to(tmp_path / "nowhere.tar")
    with pytest.raises(FileNotFoundError, match="b.tar' is not an existing .tar file"):
        make_loader(dangling, train=False, batch_size=2, crop=CROP)
    upper = folder("upper", "a.tar")
    (upper / "a.tar").rename(upper / "b.TAR")
    (upper / "a.idx").rename(upper / "b.idx")
    with pytest.raises(ValueError, match="b.TAR': rename it `\\*.tar`"):  # it was taken as a class tree
        make_loader(upper, train=False, batch_size=2, crop=CROP)
    with pytest.raises(ValueError, match="rename it"):
        make_loader(upper / "b.TAR", train=False, batch_size=2, crop=CROP)  # it was read as a file list
    tars = [str(t) for t in list_shards(shards)]
    (tmp_path / "link.tar").symlink_to(tars[1])
    index_path(tmp_path / "link.tar").symlink_to(index_path(tars[1]))
    for twice in (tars + [tars[0]], tars + [f"{shards}/../{shards.name}/part-1.tar"], tars + [tmp_path / "link.tar"]):
        with pytest.raises(ValueError, match="listed before: its samples would be read twice"):
            make_loader(twice, train=False, batch_size=2, crop=CROP)


def test_an_index_that_does_not_describe_its_tar_is_refused(tmp_path):
    own_shard(tmp_path, jpeg(3), samples=4, at=0)
    tar, index = tmp_path / "own.tar", index_path(tmp_path / "own.tar")
    original = index.read_text()
    header, *lines = original.splitlines()
    edits = {
        # another tool appended a sample after the index was written: it was never read
        "stale": original.replace("v1.2 4", "v1.2 3").replace(lines[-1] + "\n", ""),
        "repeated": "v1.2 5\n" + "\n".join(lines + [lines[0]]) + "\n",  # sample 0 twice per epoch
        "relabelled": original.replace(lines[0].split()[5], lines[1].split()[5], 1),  # sample 0 with 1's label
        "moved": original.replace(f" {lines[2].split()[1]} ", f" {int(lines[2].split()[1]) + 512} ", 1),
    }
    # A component repeated on its line: DALI reads the first, so a check of the last passed a label as an image
    # (SIGSEGV in a batch of 64) or another sample's label.
    first_jpg = " ".join(lines[1].split()[4:8]).replace("cls", "jpg")
    edits["repeated component"] = original.replace(lines[0], f"{first_jpg} {lines[0]}")
    messages = {"stale": "holds 2 members its index .* does not list \\(first 'img3.jpg'",
                "repeated": "lists the member at byte \\d+ .* twice",
                "relabelled": "pairs the image img0.jpg .* with the label img1.cls",
                "moved": "places sample 'img2''s .jpg .* where the tar holds",
                "repeated component": "line 2 .* the component .jpg is listed twice"}
    for edit, text in edits.items():
        index.write_text(text)
        with pytest.raises(ValueError, match=f"{messages[edit]}.*wds2idx"):
            file_check.check_shard(tar)
    # DALI reads offsets and sizes only, and `wds2idx` writes names as GNU tar quotes them: names are not compared.
    index.write_text(original.replace("img", "\\303\\274img"))
    assert file_check.check_shard(tar).ok
    index.write_text(original)
    assert file_check.check_shard(tar).ok


def test_an_index_is_parsed_as_dali_parses_it(tmp_path):
    webdataset_shard(tmp_path / "s.tar", [b"0000000001", b"0000000002"])
    index = index_path(tmp_path / "s.tar")
    original = index.read_text()
    offset = original.split()[3]
    for text, message in ((original.replace("\n", "\r"), "carriage return only"),  # DALI reads one line
                          (original.replace(f" {offset} ", f" {offset[0]}_{offset[1:]} ", 1), "ASCII digits"),
                          (original.replace("v1.2 2", "v1.2 \u00b2"), "not a DALI v1.2 index")):
        index.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_index(tmp_path / "s.tar")
    # A no-break space is no separator to DALI (C's isspace): the name stays whole.
    with tarfile.open(tmp_path / "nbsp.tar", "w", format=tarfile.GNU_FORMAT) as tar:
        for ext, data in (("jpg", jpeg(0)), ("cls", b"0000000007")):
            info = tarfile.TarInfo(f"photo\u00a00.{ext}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(tmp_path / "nbsp.tar") as tar:
        fields = [f"{m.name.rsplit('.', 1)[1]} {m.offset_data} {m.size} {m.name}" for m in tar]
    index_path(tmp_path / "nbsp.tar").write_text("v1.2 1\n" + " ".join(fields) + "\n", encoding="utf-8")
    assert [e.key for e in read_index(tmp_path / "nbsp.tar")] == ["photo\u00a00"]
    assert file_check.check_shard(tmp_path / "nbsp.tar").ok


def test_tars_joined_with_cat_or_with_sizes_past_any_file_are_refused(tmp_path):
    webdataset_shard(tmp_path / "a.tar", [b"0000000001"])
    webdataset_shard(tmp_path / "b.tar", [b"0000000002"])
    joined = tmp_path / "ab.tar"
    joined.write_bytes((tmp_path / "a.tar").read_bytes() + (tmp_path / "b.tar").read_bytes())
    index_path(joined).write_bytes(index_path(tmp_path / "a.tar").read_bytes())  # what wds2idx sees: a's part
    with pytest.raises(ValueError, match="ab.tar' is not a readable tar .*follows its end-of-archive marker.*tar -A"):
        file_check.check_shard(joined)
    huge = bytearray((tmp_path / "a.tar").read_bytes())
    entry = read_index(tmp_path / "a.tar")[-1]
    header = entry.label_offset - 512
    huge[header + 124:header + 136] = b"\x80" + (2**62).to_bytes(11, "big")  # base-256: tarfile reads it
    huge[header + 148:header + 156] = b" " * 8
    huge[header + 148:header + 156] = b"%06o\0 " % sum(huge[header:header + 512])
    (tmp_path / "a.tar").write_bytes(bytes(huge))  # (OSError EINVAL from a seek, naming no file, before)
    with pytest.raises(ValueError, match="a.tar' is not a readable tar"):
        webdataset.check_index(tmp_path / "a.tar", read_index(tmp_path / "a.tar"))


def test_labels_over_int32_and_a_tar_cut_inside_a_label_are_named(tmp_path):
    webdataset_shard(tmp_path / "big.tar", [b"0000000001", b"9999999999"])  # made 10**10 classes before
    with pytest.raises(ValueError, match="sample 's1': the label is 9999999999, over 2147483647"):
        file_check.check_shard(tmp_path / "big.tar")
    webdataset_shard(tmp_path / "cut.tar", [b"0000000001", b"0000000002"])
    entry = read_index(tmp_path / "cut.tar")[-1]
    (tmp_path / "cut.tar").write_bytes((tmp_path / "cut.tar").read_bytes()[:entry.label_offset + 4])
    assert "s1 (byte" in file_check.check_shard(tmp_path / "cut.tar").detail  # was "expected 10 ASCII digits"
    with pytest.raises(ValueError, match="sample 's1': the index places it up to byte .*, past the end of the "
                                         "shard .*cut short"):
        dataset_labels(tmp_path / "cut.tar")
    index = index_path(tmp_path / "cut.tar")
    for offset in ("9000000000000000000", "9" * 18, "9" * 5000):  # seek's EINVAL, an OverflowError, a digit limit
        index.write_text(index.read_text().replace(f" {entry.label_offset} ", f" {offset} ", 1))
        with pytest.raises(ValueError, match="cut.idx' line 3|past the end of the shard"):
            dataset_labels(tmp_path / "cut.tar")
        index.write_text(index.read_text().replace(f" {offset} ", f" {entry.label_offset} ", 1))
    index.unlink()
    os.mkfifo(index)  # told to "rename it 'cut.idx'", the name it had, and to run wds2idx, which wrote into it
    with pytest.raises(ValueError, match=f"its index .*cut.idx' is not a regular file .*remove it, then .*wds2idx "
                                         f"{tmp_path / 'cut.tar'} {index}"):
        dataset_labels(tmp_path / "cut.tar")
    index.unlink()
    index.symlink_to(tmp_path / "gone.idx")  # a broken link: the same
    with pytest.raises(ValueError, match="cut.idx' is not a regular file"):
        dataset_labels(tmp_path / "cut.tar")


def test_names_that_are_not_utf8_make_keys_that_give_them_back(tmp_path):
    name = os.fsdecode(b"caf\xe9/\xff photo.jpg")  # Latin-1 names, as old archives hold them
    key = sample_key(name)
    assert key.isascii() and sample_name(key) == name[:-len(".jpg")]
    writer = ShardWriter(tmp_path / "s.tar")  # the index and a PAX member name hold it
    writer.add(key, jpeg(0), 0)
    writer.close()
    assert [sample_name(e.key) for e in read_index(tmp_path / "s.tar")] == [name[:-len(".jpg")]]
    assert file_check.check_shard(tmp_path / "s.tar").ok


def test_indexes_other_tools_write_are_read_or_refused_saying_why(tmp_path):
    webdataset_shard(tmp_path / "s.tar", [b"0000000001", b"0000000002"])
    index = index_path(tmp_path / "s.tar")
    lines = index.read_text().splitlines()
    index.write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode())  # Windows line ends, a blank line at the end
    assert epoch_labels(make_loader(tmp_path, train=False, batch_size=2, crop=CROP, num_threads=1)) == [1, 2]
    for edit, message in ((lambda line: line.replace("jpg", "jpeg"), "this one has .jpeg, .cls"),
                          (lambda line: line.replace(".cls", " x.cls"), "whitespace splits the line"),
                          (lambda line: " ".join(line.split()[:4]), "this one has .jpg")):
        index.write_text("\n".join([lines[0]] + [edit(line) for line in lines[1:]]) + "\n")
        with pytest.raises(ValueError, match=f"s.idx' line 2 .*{message}"):
            read_index(tmp_path / "s.tar")


@pytest.mark.parametrize("form", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_member_walk_agrees_with_tarfile_and_reads_plain_headers_itself(tmp_path, form, monkeypatch, shards):
    import pipelines.webdataset as module

    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=form) as tar:
        for name, size in (("n01", None), ("n01/a.jpg", 700), ("n01/a.cls", 10), ("n01/link", None),
                           ("n01/" + "b" * 140 + ".jpg", 5), ("n01/é.jpg", 513), ("n01/empty.cls", 0)):
            info = tarfile.TarInfo(name)
            if name == "n01":
                info.type = tarfile.DIRTYPE
            elif name.endswith("link"):
                info.type, info.linkname = tarfile.SYMTYPE, "a.jpg"
            else:
                info.size = size
            if form == tarfile.USTAR_FORMAT and not (name.isascii() and len(name) <= 100):
                continue  # ustar cannot hold it
            tar.addfile(info, io.BytesIO(b"x" * (size or 0)) if size is not None else None)
    with tarfile.open(path) as tar:
        expected = {m.offset_data: (m.name, m.size) for m in tar if m.isreg()}
    assert module.tar_members(path) == expected
    # This project's shards (short ASCII names) and plain ustar: every header parsed here, none by tarfile.
    monkeypatch.setattr(module.tarfile, "open", lambda *args, **kwargs: pytest.fail("read by tarfile"))
    for shard in list_shards(shards):
        assert len(module.tar_members(shard)) == 2 * len(read_index(shard))
    if form == tarfile.USTAR_FORMAT:
        assert module.tar_members(path) == expected


def test_hard_links_and_naming_mistakes_in_a_shard_folder_are_named(shards, tmp_path):
    linked = tmp_path / "linked"
    linked.mkdir()
    for name in ("a", "b"):  # `cp -al` or `ln`: one shard under two names was read twice per epoch
        for suffix in (".tar", ".idx"):
            os.link(shards / f"part-0{suffix}", linked / f"{name}{suffix}")
    with pytest.raises(ValueError, match="b.tar' is .*a.tar', listed before"):
        make_loader(linked, train=False, batch_size=2, crop=CROP)
    named = tmp_path / "named"
    named.mkdir()
    (named / "s.tar").write_bytes((shards / "part-0.tar").read_bytes())
    (named / "s.tar.idx").write_bytes(index_path(shards / "part-0.tar").read_bytes())
    with pytest.raises(ValueError, match="s.tar.idx': DALI and this project look for 's.idx'; rename it"):
        make_loader(named, train=False, batch_size=2, crop=CROP)  # was "a shard is missing: s.tar.tar"
    with pytest.raises(ValueError, match="s.tar.idx' is a WebDataset index: give its shard"):
        make_loader(named / "s.tar.idx", train=False, batch_size=2, crop=CROP)  # was read as a file list
    (named / "s.tar.idx").rename(named / "s.IDX")
    with pytest.raises(ValueError, match="has its index as 's.IDX': rename it 's.idx'"):  # was "has no index"
        make_loader(named, train=False, batch_size=2, crop=CROP)
    (named / "s.IDX").rename(named / "s.idx")
    (tmp_path / "split").mkdir()
    (named).rename(tmp_path / "split" / "train")  # OUT/train/*.tar given as OUT: read as a class tree
    with pytest.raises(ValueError, match="'train' holds .tar shards: give that folder itself"):
        make_loader(tmp_path / "split", train=False, batch_size=2, crop=CROP)
    compressed = tmp_path / "compressed"
    compressed.mkdir()
    (compressed / "s.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(ValueError, match="compressed tar shards .*decompress them"):  # was "no class folders"
        make_loader(compressed, train=False, batch_size=2, crop=CROP)


def test_shards_of_prepare_outputs_with_other_classes_are_refused(shards, tmp_path):
    tars = []
    for name, classes in (("one", ["cat", "dog"]), ("two", ["dog", "emu"]), ("three", ["cat", "dog"])):
        (tmp_path / name).mkdir()
        for suffix in (".tar", ".idx"):
            (tmp_path / name / f"s{suffix}").write_bytes((shards / f"part-0{suffix}").read_bytes())
        (tmp_path / name / PREPARE_MANIFEST).write_text(json.dumps({"complete": True, "classes": classes}))
        tars.append(str(tmp_path / name / "s.tar"))
    with pytest.raises(ValueError, match="prepare` outputs of other classes, .*one' and .*two'.*a label would mean"):
        make_loader(tars[:2], train=False, batch_size=2, crop=CROP)
    assert preparation([tars[0], tars[2]])["classes"] == ["cat", "dog"]  # the same classes: kept
