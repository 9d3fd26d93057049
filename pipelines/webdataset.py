"""The WebDataset shards this project writes (`dali-has prepare --webdataset`) and reads (`make_loader`).

A shard is a plain POSIX tar holding, per sample, two members named `<key>.jpg` (the encoded image) and
`<key>.cls` (the label), next to a DALI index `<shard>.idx` so `fn.readers.webdataset` seeks straight to each
member instead of scanning the tar at start-up.

* Keys: the sample's relative path without its extension, e.g. `n01440764/n01440764_10026`, so a shard member
  says which source file it came from. WebDataset splits a member name at the first dot of its last path
  component (`a/b.c.jpg` is key `a/b`, component `c.jpg`), and DALI's index format separates fields by
  whitespace, so `%`, `.` and whitespace in a key are written as `%XX` (percent-encoding; `sample_name` undoes it).
* Labels: ten ASCII digits, zero-padded (`0000000003`). Text is the WebDataset convention (`int(b"0000000003")`
  reads it in any tool); the fixed width lets the DALI graph turn the bytes into an integer with three
  arithmetic ops (`pipelines.reader`), without a Python callback. Ten digits hold any int32 label.
* Index (DALI's v1.2 format, what its `wds2idx` tool writes): `v1.2 <samples>`, then one line per sample with
  `<ext> <data offset> <size> <member name>` for each component. We write it while writing the tar, from the
  offsets `tarfile` reports, so no second pass over the data is needed.
"""
from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXT = "jpg"
LABEL_EXT = "cls"
LABEL_DIGITS = 10
MAX_LABEL = 2**31 - 1
INDEX_VERSION = "v1.2"
SHARD_SUFFIX = ".tar"
INDEX_SUFFIX = ".idx"

_ESCAPED = re.compile(r"[%.\s]")


def sample_key(name: str) -> str:
    """The key of the sample whose relative path is `name`: its path without the extension, escaped."""
    stem = str(Path(name).with_suffix(""))
    return _ESCAPED.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), stem)


def sample_name(key: str) -> str:
    """The relative path (without extension) a key was made from."""
    from urllib.parse import unquote

    return unquote(key)


def encode_label(label: int) -> bytes:
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= MAX_LABEL:
        raise ValueError(f"label {label!r}: WebDataset shards hold labels 0..{MAX_LABEL}")
    return str(label).zfill(LABEL_DIGITS).encode("ascii")


def index_path(shard: str | os.PathLike) -> Path:
    """`<shard>.idx` for `<shard>.tar`."""
    return Path(shard).with_suffix(INDEX_SUFFIX)


class ShardWriter:
    """Writes one shard and its index: `add(key, jpeg, label)` per sample, then `close()`.

    Both files are written under temporary names and renamed into place by `close()` (index last), so a shard
    whose `.idx` exists is complete; an interrupted writer leaves only `*.partial` files behind.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._tar_tmp = self.path.with_name(self.path.name + ".partial")
        self._index_tmp = index_path(self.path).with_name(index_path(self.path).name + ".partial")
        for tmp in (self._tar_tmp, self._index_tmp):  # an interrupted writer's, or a link: never written through
            tmp.unlink(missing_ok=True)
        self._tar = tarfile.open(self._tar_tmp, "w", format=tarfile.PAX_FORMAT)  # PAX: names of any length
        self._lines: list[str] = []
        self.keys: list[str] = []

    def add(self, key: str, jpeg: bytes, label: int) -> None:
        line = []
        for ext, data in ((IMAGE_EXT, jpeg), (LABEL_EXT, encode_label(label))):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(data)
            info.mode = 0o644
            self._tar.addfile(info, _Bytes(data))
            # The data ends the member, padded to whole tar blocks; before it come the header(s), one more
            # (PAX) for long names, so the start is counted back from the end.
            start = self._tar.offset - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            line.append(f"{ext} {start} {len(data)} {info.name}")
        self._lines.append(" ".join(line))
        self.keys.append(key)

    def close(self) -> None:
        self._tar.close()
        with open(self._index_tmp, "w", encoding="utf-8") as index:
            index.write(f"{INDEX_VERSION} {len(self._lines)}\n")
            index.writelines(line + "\n" for line in self._lines)
        os.replace(self._tar_tmp, self.path)
        os.replace(self._index_tmp, index_path(self.path))


class _Bytes:
    """The minimal file object `TarFile.addfile` reads a member's data from."""

    def __init__(self, data: bytes):
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk, self._pos = self._data[self._pos:end], min(end, len(self._data))
        return chunk


@dataclass(frozen=True)
class IndexEntry:
    key: str
    label_offset: int  # where the `.cls` member's data starts in the tar, and its size in bytes
    label_size: int
    image_offset: int  # where the `.jpg` member's data starts, and its size in bytes
    image_size: int


def read_index(shard: str | os.PathLike) -> list[IndexEntry]:
    """The samples of a shard from its `.idx`, checked: v1.2, the declared count, a `.jpg` and a `.cls` each."""
    path = index_path(shard)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"shard {str(shard)!r} has no index {str(path)!r}: write one with DALI's `wds2idx {shard} {path}`, "
            "or prepare the data with `dali-has prepare --webdataset`") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{str(path)!r} is not UTF-8 text (byte {error.start}); member names must be UTF-8: "
                         "rewrite the shard with `dali-has prepare --webdataset`") from None
    header = lines[0].split() if lines else []
    if len(header) != 2 or header[0] != INDEX_VERSION or not header[1].isdigit() or int(header[1]) != len(lines) - 1:
        raise ValueError(f"{str(path)!r} is not a DALI {INDEX_VERSION} index of {len(lines) - 1} samples "
                         f"(first line {lines[0]!r} if any); rewrite it with DALI's `wds2idx`" if lines else
                         f"{str(path)!r} is empty; rewrite it with DALI's `wds2idx`")
    if len(lines) == 1:
        raise ValueError(f"{str(path)!r} lists no samples: DALI's reader refuses an empty shard; remove "
                         f"{str(shard)!r} from the data")
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split()
        try:
            components = {fields[i]: (int(fields[i + 1]), int(fields[i + 2]), fields[i + 3])
                          for i in range(0, len(fields) - 3, 4)}
        except ValueError:
            components = {}
        if (len(fields) % 4 or IMAGE_EXT not in components or LABEL_EXT not in components
                or any(offset < 0 or size < 0 for offset, size, _ in components.values())):
            raise ValueError(f"{str(path)!r} line {number}: expected a .{IMAGE_EXT} and a .{LABEL_EXT} component "
                             f"('<ext> <offset> <size> <name>' each, whole numbers of bytes), got {line!r}")
        label_offset, label_size, name = components[LABEL_EXT]
        image_offset, image_size, _ = components[IMAGE_EXT]
        entries.append(IndexEntry(name[:-len(LABEL_EXT) - 1], label_offset, label_size, image_offset, image_size))
    return entries


def read_labels(shard: str | os.PathLike, entries: Sequence[IndexEntry]) -> list[int]:
    """The labels of a shard's samples, read at the offsets its index gives (no scan of the tar)."""
    labels = []
    with open(shard, "rb") as tar:
        for entry in entries:
            tar.seek(entry.label_offset)
            text = tar.read(min(entry.label_size, LABEL_DIGITS + 1))
            # Exactly that many digits: the graph reads the member whole as a number of LABEL_DIGITS places.
            if len(text) != LABEL_DIGITS or not text.isdigit():
                raise ValueError(f"shard {str(shard)!r}, sample {entry.key!r}: the label is {text!r}, expected "
                                 f"{LABEL_DIGITS} ASCII digits (as `dali-has prepare --webdataset` writes)")
            labels.append(int(text))
    return labels
