"""The WebDataset shards this project writes (`dali-has prepare --webdataset`) and reads (`make_loader`).

A shard is a plain POSIX tar holding, per sample, two members named `<key>.jpg` (the encoded image) and
`<key>.cls` (the label), next to a DALI index `<shard>.idx` so `fn.readers.webdataset` seeks straight to each
member instead of scanning the tar at start-up.

* Keys: the sample's relative path without its extension, e.g. `n01440764/n01440764_10026`, so a shard member
  says which source file it came from. WebDataset splits a member name at the first dot of its last path
  component (`a/b.c.jpg` is key `a/b`, component `c.jpg`), and DALI's index format separates fields by
  whitespace, so `%`, `.` and whitespace in a key are written as `%XX` (percent-encoding; `sample_name` undoes it),
  and so is each byte of a file name that is not UTF-8 (Python holds it as a lone surrogate, which neither the
  UTF-8 index nor a PAX member name can hold).
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

from dali_has import validate
from pipelines.own_files import temporary

IMAGE_EXT = "jpg"
LABEL_EXT = "cls"
LABEL_DIGITS = 10
INDEX_VERSION = "v1.2"
MAX_DIGITS = 18  # of an index's counts, offsets and sizes: int64 holds every 18-digit number (5,000 were a traceback)
SHARD_SUFFIX = ".tar"
INDEX_SUFFIX = ".idx"

_ESCAPED = re.compile(r"[%.\s\udc80-\udcff]")


def sample_key(name: str) -> str:
    """The key of the sample whose relative path is `name`: its path without the extension, escaped."""
    stem = str(Path(name).with_suffix(""))
    return _ESCAPED.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode(errors="surrogateescape")), stem)


def sample_name(key: str) -> str:
    """The relative path (without extension) a key was made from."""
    from urllib.parse import unquote

    return unquote(key, errors="surrogateescape")


def encode_label(label: int) -> bytes:
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= validate.MAX_LABEL:
        raise ValueError(f"label {label!r}: WebDataset shards hold labels 0..{validate.MAX_LABEL}")
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
        self._tar_tmp, self._index_tmp = temporary(self.path), temporary(index_path(self.path))
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
    """The samples of a shard from its `.idx`, checked: v1.2, the declared count, one `.jpg` and one `.cls` each.

    Read as DALI reads it: lines end at `\n` (a `\r` before it is whitespace), fields are split at ASCII
    whitespace, numbers are ASCII digits; Python's own rules (Unicode whitespace and digits, `1_000`) would
    accept indexes DALI refuses, or split names DALI keeps whole."""
    path = index_path(shard)
    try:
        raw = path.read_bytes()
        raw.decode("utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"shard {str(shard)!r} has no index {str(path)!r}: write one with DALI's `wds2idx {shard} {path}`, "
            "or prepare the data with `dali-has prepare --webdataset`") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{str(path)!r} is not UTF-8 text (byte {error.start}); member names must be UTF-8: "
                         "rewrite the shard with `dali-has prepare --webdataset`") from None
    # bytes.split() splits at ASCII whitespace only: C's isspace, as DALI's parser does
    lines = [line.split() for line in raw.split(b"\n")]
    while lines and not lines[-1]:  # DALI reads the declared lines only: a blank tail is no sample
        lines.pop()
    header = lines[0] if lines else []
    if len(header) != 2 or header[0] != INDEX_VERSION.encode() or not header[1].isdigit() \
            or len(header[1]) > MAX_DIGITS or int(header[1]) != len(lines) - 1:
        cr = "; its lines end in a carriage return only (old Mac): convert them to LF" if b"\r" in raw else ""
        raise ValueError(f"{str(path)!r} is not a DALI {INDEX_VERSION} index of {len(lines) - 1} samples (first line "
                         f"{b' '.join(header).decode()!r}){cr}; rewrite it with DALI's `wds2idx`" if lines else
                         f"{str(path)!r} is empty; rewrite it with DALI's `wds2idx`")
    if len(lines) == 1:
        raise ValueError(f"{str(path)!r} lists no samples: DALI's reader refuses an empty shard; remove "
                         f"{str(shard)!r} from the data")
    image_ext, label_ext = IMAGE_EXT.encode(), LABEL_EXT.encode()
    entries = []
    for number, fields in enumerate(lines[1:], start=2):
        # bytes.isdigit(): ASCII digits only, as DALI reads them (not `²`, `١٢` or `1_000`, which int() takes)
        if len(fields) % 4 or not all(field.isdigit() and len(field) <= MAX_DIGITS
                                      for k in (1, 2) for field in fields[k::4]):
            raise ValueError(f"{_line(path, number, fields)}: expected '<ext> <offset> <size> <name>' per "
                             f"component, whole numbers of bytes in at most {MAX_DIGITS} ASCII digits; a member name "
                             "holding ASCII whitespace splits the line: rewrite the shards with `dali-has prepare "
                             "--webdataset`")
        exts = fields[::4]
        if len(set(exts)) < len(exts):  # DALI reads the first and warns; a check of another would pass what it reads
            repeated = next(ext for ext in exts if exts.count(ext) > 1).decode()
            raise ValueError(f"{_line(path, number, fields)}: the component .{repeated} is listed twice; rewrite "
                             f"the index with DALI's `wds2idx {shard} {path}`")
        components = {fields[i]: fields[i + 1:i + 4] for i in range(0, len(fields), 4)}
        if image_ext not in components or label_ext not in components:
            found = ", ".join(f".{ext.decode()}" for ext in components)
            raise ValueError(f"{_line(path, number, fields)}: a sample here is a .{IMAGE_EXT} JPEG and a "
                             f".{LABEL_EXT} label, next to each other in the tar; this one has {found}. Rewrite the "
                             "shards from the source images with `dali-has prepare --webdataset`")
        label_offset, label_size, name = components[label_ext]
        image_offset, image_size, _ = components[image_ext]
        entries.append(IndexEntry(name[:-len(label_ext) - 1].decode(), int(label_offset), int(label_size),
                                  int(image_offset), int(image_size)))
    return entries


def _line(path: Path, number: int, fields: list[bytes]) -> str:
    """Where an index line is, for an error (made only then: an index has a line per sample)."""
    return f"{str(path)!r} line {number} ({b' '.join(fields).decode()!r})"


def _sample(shard: str | os.PathLike, entry: IndexEntry) -> str:
    return f"shard {str(shard)!r}, sample {entry.key!r}"


def check_index(shard: str | os.PathLike, entries: Sequence[IndexEntry]) -> None:
    """Raise ValueError unless `entries` (the shard's index) describe its tar: each sample's image and label are
    the data of members of those sizes, named `<key>.jpg` and `<key>.cls` with one key, none listed twice, and
    every `.jpg`/`.cls` member is listed. An index left from before samples were appended skips them; an edited
    one can repeat or mislabel samples. The index's own name fields are not compared: DALI reads only offsets
    and sizes, and `wds2idx` writes names as GNU tar quotes them (`\\303\\274` for `ü` in a C locale). Reads
    the tar's member headers, not their data."""
    path = index_path(shard)
    rewrite = f"rewrite the index with DALI's `wds2idx {shard} {path}`, or the shards with `dali-has prepare " \
              "--webdataset`"
    try:
        members = tar_members(shard)
    except (tarfile.TarError, OSError, ValueError, OverflowError) as error:  # sizes past any file: EINVAL
        raise ValueError(f"shard {str(shard)!r} is not a readable tar ({error}): {rewrite}") from None
    listed: set[int] = set()
    for entry in entries:
        stems = []
        for ext, offset, size in ((IMAGE_EXT, entry.image_offset, entry.image_size),
                                  (LABEL_EXT, entry.label_offset, entry.label_size)):
            if offset in listed:
                raise ValueError(f"{str(path)!r} lists the member at byte {offset} of {str(shard)!r} twice (as "
                                 f"{entry.key}.{ext}): samples would repeat; {rewrite}")
            held = members.get(offset)
            if held is None or held[1] != size or not held[0].endswith("." + ext):
                found = f"member {held[0]!r} of {held[1]} bytes" if held else "no member's data"
                raise ValueError(f"{str(path)!r} does not describe {str(shard)!r}: it places sample "
                                 f"{entry.key!r}'s .{ext} ({size} bytes) at byte {offset}, where the tar holds "
                                 f"{found}; {rewrite}")
            listed.add(offset)
            stems.append(held[0][:-len(ext) - 1])
        if stems[0] != stems[1]:
            raise ValueError(f"{str(path)!r} pairs the image {stems[0]}.{IMAGE_EXT} of {str(shard)!r} with the label "
                             f"{stems[1]}.{LABEL_EXT}: it would be trained on with another sample's label; {rewrite}")
    unlisted = [name for offset, (name, _) in members.items()
                if offset not in listed and name.endswith((f".{IMAGE_EXT}", f".{LABEL_EXT}"))]
    if unlisted:
        raise ValueError(f"{str(shard)!r} holds {len(unlisted)} members its index {str(path)!r} does not list "
                         f"(first {unlisted[0]!r}; was the tar written to after its index?): {rewrite}")


def tar_members(shard: str | os.PathLike) -> dict[int, tuple[str, int]]:
    """The regular members of a tar: data offset -> (name, size). Plain ustar headers, what this project writes
    for names of up to 100 ASCII characters, are parsed here from one 512-byte read each (about 5 µs a member);
    a tar holding anything else (PAX or GNU long names, other member types, a bad checksum) is read by
    `tarfile` (about 20 µs a member). Raises `tarfile.TarError` for data after the end-of-archive marker: two
    tars joined with `cat`, whose second part tar tools (and `wds2idx`) never see."""
    with open(shard, "rb") as tar:
        fd, end = tar.fileno(), os.fstat(tar.fileno()).st_size
        members, position = _plain_members(fd, end)
        if members is None:
            with tarfile.open(fileobj=tar, mode="r:") as archive:
                members = {info.offset_data: (info.name, info.size) for info in archive if info.isreg()}
                position = archive.offset  # where it met the end-of-archive marker
        if os.pread(fd, tarfile.BLOCKSIZE, position) == tarfile.NUL * tarfile.BLOCKSIZE:  # else cut short
            for chunk_start in range(position, end, 1 << 16):
                chunk = os.pread(fd, 1 << 16, chunk_start)
                if chunk.strip(tarfile.NUL):
                    at = chunk_start + len(chunk) - len(chunk.lstrip(tarfile.NUL))
                    raise tarfile.TarError(f"data at byte {at} follows its end-of-archive marker at byte {position}: "
                                           "two tars joined with `cat`? Join them with `tar -A`")
    return members


def _plain_members(fd: int, end: int) -> tuple[dict[int, tuple[str, int]] | None, int]:
    """`tar_members` when every header is plain ustar, and where the end-of-archive marker is; None otherwise."""
    members, position = {}, 0
    while position + tarfile.BLOCKSIZE <= end:
        header = os.pread(fd, tarfile.BLOCKSIZE, position)
        if header == tarfile.NUL * tarfile.BLOCKSIZE:  # the end-of-archive marker
            break
        kind, size, checksum = header[156:157], _octal(header[124:136]), _octal(header[148:156])
        if (kind not in _PLAIN_TYPES or header[257:262] != b"ustar" or header[345:346] != tarfile.NUL
                or size is None or not header[:100].isascii()
                or checksum != sum(header[:148]) + 8 * 0x20 + sum(header[156:])):  # field read as spaces
            return None, position
        position += tarfile.BLOCKSIZE
        if kind in _FILE_TYPES:  # links and folders have no data (tarfile skips none either)
            members[position] = (header[:100].split(tarfile.NUL, 1)[0].decode("ascii"), size)
            position += -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return members, position


_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)  # what `TarInfo.isreg()` takes, but sparse
_PLAIN_TYPES = _FILE_TYPES + (tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE,
                              tarfile.FIFOTYPE)  # no header of theirs changes the next member


def _octal(field: bytes) -> int | None:
    digits = field.strip(b"\0 ")
    return int(digits, 8) if digits and all(0x30 <= b <= 0x37 for b in digits) else None


def read_labels(shard: str | os.PathLike, entries: Sequence[IndexEntry]) -> list[int]:
    """The labels of a shard's samples, read at the offsets its index gives (no scan of the tar)."""
    labels = []
    with open(shard, "rb") as tar:
        size = os.fstat(tar.fileno()).st_size
        for entry in entries:
            end = max(entry.label_offset + entry.label_size, entry.image_offset + entry.image_size)
            if end > size:  # far past it, seeking raised "[Errno 22] Invalid argument" or an OverflowError, unnamed
                raise ValueError(f"{_sample(shard, entry)}: the index places it up to byte {end}, past the end of "
                                 f"the shard ({size} bytes): the shard was cut short (copy it again) or the index "
                                 f"is another's (rewrite it with DALI's `wds2idx {shard} {index_path(shard)}`)")
            tar.seek(entry.label_offset)
            text = tar.read(min(entry.label_size, LABEL_DIGITS + 1))
            # Exactly that many digits: the graph reads the member whole as a number of LABEL_DIGITS places.
            if len(text) != LABEL_DIGITS or not text.isdigit():
                raise ValueError(f"{_sample(shard, entry)}: the label is {text!r}, expected {LABEL_DIGITS} ASCII "
                                 "digits (as `dali-has prepare --webdataset` writes)")
            if int(text) > validate.MAX_LABEL:
                raise ValueError(f"{_sample(shard, entry)}: the label is {int(text)}, over {validate.MAX_LABEL} "
                                 "(DALI holds labels as 32-bit integers); number the classes from 0")
            labels.append(int(text))
    return labels
