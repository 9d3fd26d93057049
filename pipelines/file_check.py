"""Which listed files are safe to hand to DALI's image decoder, checked when a dataset is listed and cached.

Why at listing time: DALI 2.4's image decoder parses every sample's header in parallel blocks, and when the
header of a sample in the calling thread's block cannot be parsed it leaves the block before the other threads
are done, which crashes the process (SIGSEGV) instead of raising. That needs a batch larger than 4 x (threads
+ 1), so any real training batch; it was seen with text and GIF files named .jpg, with PNGs and JPEGs cut
inside their headers and with garbage behind a valid signature. A file whose header parses but whose data is
bad raises an ordinary error, which `pipelines.bad_files` turns into one naming the file, but only when its
batch is decoded, mid-epoch, where `skip_bad_files` can no longer leave it out; so the commonest such file, a
JPEG or WebP cut short (an interrupted download or copy), is refused here too, for one more small read.

So before DALI sees a file, each one is checked here, reading a few bytes, its header and (JPEG) its end:
* it is a regular file after following links (no FIFO, device or socket: those hang or never end), non-empty
  and at most MAX_FILE_BYTES (a larger one is refused, never read);
* its first bytes are the signature of a format DALI decodes, by the rules of nvImageCodec's parsers:
  JPEG (FF D8), PNG, BMP ("BM", at least 18 bytes), TIFF and BigTIFF, PNM/PPM/PGM/PBM ("P1".."P6" and white
  space), JPEG 2000 (JP2 box or J2K codestream), WebP (RIFF/WEBP with a VP8, VP8L or VP8X chunk);
* nvImageCodec, the library DALI decodes with, parses its header (the same parser DALI runs, reading only the
  header) and the size it finds is sane: 1..MAX_SIDE pixels a side, at most MAX_PIXELS pixels (a
  decompression bomb is refused rather than allocated), at least one channel;
* a JPEG has its end-of-image marker after its first scan (DALI's CPU decoder fails on one without it, even
  with all of its data; bytes after the marker are allowed, as they decode): its last 2 bytes are read, and
  only a file that does not end in the marker is walked through (`pipelines.jpeg_header`); a WebP is at
  least as long as its RIFF header says. (BMP, TIFF, PNM and JPEG 2000 files cut short still pass: rare in
  training data, and their ends take a parse of each format to find.)
* a file of decoded pixels (named `.npy`; a `.npy` name and NumPy content go together) is what
  `fn.decoders.numpy` reads and the pipelines expect: NumPy format 1.0, uint8, C order, height x width x 3 within
  the same size limits, and exactly as many bytes as its header says (a file cut short is refused here, not
  while training). Its header is parsed by NumPy's reader, which evaluates literals only: no code runs.

WebDataset shards get the same checks sample by sample (`check_shard`: each image read where the shard's index
puts it, so the whole shard is read once), and are cached the same way, per shard; a shard with a bad sample
is refused as a whole, since DALI's WebDataset reader cannot leave samples out.

Verdicts are cached per data source in `cache_root()/file_check/` as JSON, keyed by each file's path, size and
modification time, so a run over unchanged files pays one `stat` per file. Writers replace the cache file
atomically under a lock (torchrun ranks of one node check once); a corrupt or unreadable cache is ignored and
rebuilt.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from dali_has.cache import cache_root
from pipelines import webdataset
from pipelines.errors import UnreadableImageError
from pipelines.files import PIXELS_SUFFIX, Dataset, checked_path, is_utf8, list_shards, load_dataset
from pipelines.jpeg_header import EOI, parse_jpeg_header

# The largest file read: every image within MAX_PIXELS fits, even uncompressed (179 M pixels x 3 bytes is
# 537 MB); a training image of more than a gigabyte is an error or an attack, not data.
MAX_FILE_BYTES = 1 << 30
# DALI's decoder refuses longer sides ("Maximum supported image dimension is 65500 pixels").
MAX_SIDE = 65500
# PIL's decompression-bomb limit (2 * Image.MAX_IMAGE_PIXELS at its default): decoding more would allocate
# gigabytes per image.
MAX_PIXELS = 178_956_970
# A NumPy file's signature, and its preamble: signature, version, and (version 1.0) the header's length in 2 bytes.
NPY_MAGIC = b"\x93NUMPY"
NPY_PREAMBLE = 10
# A WebP's RIFF payload holds at least "WEBP" and one chunk header (4 + 8 bytes); DALI fails on less.
WEBP_MIN_PAYLOAD = 12
_RFIND_CHUNK = 1 << 20  # bytes read at a time looking for a JPEG's end-of-image marker from the file's end
_BLOCK = 1 << 16  # bytes read at a time walking a JPEG's marker segments
# Threads overlap the reads on cold or network storage; each takes CHUNK files at a time.
_CHECK_THREADS = 8
_CHUNK = 256
_SHOWN_SAMPLES = 3  # bad samples a shard's verdict names
_CACHE_FORMAT, _CACHE_VERSION = "dali-has-file-check", 2  # 2: JPEGs cut short are refused
_PROC_FDS = os.path.isdir("/proc/self/fd")  # Linux with /proc mounted, i.e. wherever DALI runs, in practice
OK = "ok"


@dataclass(frozen=True)
class Verdict:
    """What the check found: kind OK with `detail` = the format (e.g. "jpeg"), or a refusal kind and a message."""

    # OK, or: missing, unreadable, not-a-file, empty, too-large, not-an-image, bad-header, bad-dimensions, truncated;
    # bad-samples for a WebDataset shard (`check_shard`)
    kind: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.kind == OK


@dataclass(frozen=True)
class CheckedFiles:
    """A dataset split into the files DALI may decode (`accepted`, in reader order, labels kept) and the
    refused ones, `(name, verdict)` in dataset order."""

    accepted: Dataset
    refused: tuple[tuple[str, Verdict], ...]
    refused_list: Optional[Path]  # where all refused files are listed (JSON lines), None when there are none


def signature_format(head: bytes) -> Optional[str]:
    """The format whose signature `head` (a file's first 16 bytes) starts with, among those DALI decodes."""
    if head[:2] == b"\xff\xd8":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "pnm"
    if head[:12] == b"\0\0\0\x0cjP  \r\n\x87\n" or (head[:2] == b"\xff\x4f" and len(head) >= 12):
        return "jpeg2000"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] in (b"VP8 ", b"VP8L", b"VP8X"):
        return "webp"
    return None


def _image_format(head: bytes, size: int) -> Optional[str]:
    """`signature_format` of an image of `size` bytes; None also for a BMP shorter than its 18-byte header."""
    fmt = signature_format(head)
    return None if fmt == "bmp" and size < 18 else fmt


def _other_format(head: bytes) -> str:
    """Words for a file of no format DALI decodes."""
    known = {b"GIF87a": "a GIF file", b"GIF89a": "a GIF file", b"%PDF": "a PDF file", b"PK\x03\x04": "a ZIP file",
             b"\x1f\x8b": "a gzip file"}
    for magic, name in known.items():
        if head.startswith(magic):
            return f"is {name}, not a format DALI decodes"
    if head[4:8] == b"ftyp":
        return "is an ISO media file (HEIC, AVIF or video), not a format DALI decodes"
    return f"is not an image file DALI decodes (it starts with {head!r})"


def check_file(path: str | os.PathLike) -> Verdict:
    """Check one file (see the module docstring); reads its header (and a JPEG's end), never blocks on a FIFO."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; the descriptor is checked before any read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return Verdict("missing", "does not exist (or is a broken link)")
    except OSError as error:
        return Verdict("unreadable", f"cannot be opened: {error.strerror or error}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return Verdict("not-a-file", f"is not a regular file ({_file_type(info.st_mode)}); it is never read")
        return _check_regular(fd, info.st_size, path)
    finally:
        os.close(fd)


def read_image_file(path: str | os.PathLike) -> bytes:
    """A file's bytes through the same guards as `check_file`: a regular file of at most MAX_FILE_BYTES, opened
    without blocking; OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", closefd=True) as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_file_type(info.st_mode)})", os.fspath(path))
        data = file.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_FILE_BYTES} bytes", os.fspath(path))
    return data


def _check_regular(fd: int, size: int, path: str | os.PathLike) -> Verdict:
    if size == 0:
        return Verdict("empty", "is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        return _too_large(size)
    try:
        head = os.pread(fd, 16, 0)
    except OSError as error:
        return Verdict("unreadable", f"cannot be read: {error.strerror or error}")
    named_pixels = os.fspath(path).lower().endswith(PIXELS_SUFFIX)
    if head.startswith(NPY_MAGIC) != named_pixels:
        return Verdict("not-an-image", f"is named {PIXELS_SUFFIX} but is no NumPy file" if named_pixels else
                       f"is a NumPy file; name it *{PIXELS_SUFFIX} (decoded pixels are read by name)")
    if named_pixels:
        return _check_pixels(fd, size)
    fmt = _image_format(head, size)
    if fmt is None:
        return Verdict("not-an-image", _other_format(head))
    return _check_header(fd, fmt, size, path)


def _check_header(fd: int, fmt: str, size: int, path: str | os.PathLike) -> Verdict:
    # Through /proc the library opens the very file checked above, never one swapped in since (e.g. a FIFO).
    return _check_image(f"/proc/self/fd/{fd}" if _PROC_FDS else os.fspath(path), _FileBytes(fd, size), fmt, size)


def _too_large(size: int) -> Verdict:
    return Verdict("too-large", f"is {size} bytes, more than the {MAX_FILE_BYTES} a training image may have; it is "
                                "not read")


def check_image_bytes(data: bytes) -> Verdict:
    """`check_file`'s checks on an image held in memory (a sample of a WebDataset shard; the caller refuses one
    of more than MAX_FILE_BYTES before reading it)."""
    if not data:
        return Verdict("empty", "is empty (0 bytes)")
    fmt = _image_format(data[:16], len(data))
    if fmt is None:
        return Verdict("not-an-image", _other_format(data[:16]))
    return _check_image(data, data, fmt, len(data))


def _check_image(source, data, fmt: str, size: int) -> Verdict:
    """The header and end checks of an image with a format's signature: `source` is what nvImageCodec parses (a
    path, or the bytes), `data` the image's `size` bytes as `parse_jpeg_header` reads them."""
    import nvidia.nvimgcodec as nvimgcodec  # DALI's own image codec library (a dependency of DALI)

    try:
        stream = nvimgcodec.CodeStream(source)
        width, height, channels = stream.width, stream.height, stream.num_channels
    except Exception:  # nvImageCodec raises RuntimeError("Failed to get image info") and logs the detail
        return Verdict("bad-header", f"has a {fmt} signature but its header cannot be parsed (corrupt or cut short)")
    if width < 1 or height < 1 or max(width, height) > MAX_SIDE or channels < 1:
        return Verdict("bad-dimensions", f"its {fmt} header says {width}x{height} pixels, {channels} channel(s); "
                                         f"DALI decodes 1..{MAX_SIDE} pixels a side")
    if width * height > MAX_PIXELS:
        return Verdict("too-large", f"its {fmt} header says {width}x{height} pixels, a decompression-bomb size "
                                    f"(more than {MAX_PIXELS})")
    try:
        cut = _cut_short(data, fmt, size)
    except OSError as error:
        return Verdict("unreadable", f"cannot be read: {error.strerror or error}")
    if cut:
        return Verdict("truncated", f"is a truncated {fmt.upper()}: {cut} (DALI's decoder fails on most such files)")
    return Verdict(OK, fmt)


def _cut_short(data, fmt: str, size: int) -> Optional[str]:
    """What is missing from a JPEG or WebP (`data`: its `size` bytes, or a `_FileBytes`) whose header parsed but
    whose data ends early, or None."""
    if fmt == "jpeg":
        # Almost every file ends in its end-of-image marker: 2 bytes are read. Only one that does not (cut
        # short, or with bytes after the marker) is walked through, read where the walk goes.
        if data[size - 2:size] == EOI:
            return None
        try:
            header = parse_jpeg_header(data)
        except IndexError:  # shorter than it was a moment ago
            return "it was cut while it was checked"
        return None if header is not None and header.has_eoi else "its data ends before the end-of-image marker"
    if fmt == "webp":
        payload = int.from_bytes(data[4:8], "little")  # what follows the RIFF header's 8 bytes
        if payload < WEBP_MIN_PAYLOAD:
            return f"its RIFF header says it holds {payload} bytes, too few for any image"
        return f"its RIFF header says {8 + payload} bytes, the file has {size}" if size < 8 + payload else None
    return None


class _FileBytes:
    """The bytes of an open file as `parse_jpeg_header` reads them (len, index, slice, rfind), read with pread
    a block at a time as the walk goes (one call per byte made a file of fill bytes 10 times slower). Not
    mmap: a file cut while it is mapped kills the process (SIGBUS), and some FUSE and network file systems
    cannot map at all."""

    def __init__(self, fd: int, size: int):
        self.fd, self.size = fd, size
        self._start, self._block = 0, b""

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, _ = key.indices(self.size)
            if self._start <= start and stop <= self._start + len(self._block):
                return self._block[start - self._start:stop - self._start]
            return os.pread(self.fd, max(0, stop - start), start)
        if not self._start <= key < self._start + len(self._block):
            self._start, self._block = key, os.pread(self.fd, _BLOCK, key)
        return self._block[key - self._start]  # IndexError when the file is shorter now

    def rfind(self, sub: bytes, start: int) -> int:
        """Like bytes.rfind(sub, start): read backwards from the end in chunks that overlap by len(sub) - 1."""
        end = self.size
        while end - start >= len(sub):
            begin = max(start, end - _RFIND_CHUNK)
            found = os.pread(self.fd, end - begin, begin).rfind(sub)
            if found != -1:
                return begin + found
            end = begin + len(sub) - 1
        return -1


def _check_pixels(fd: int, size: int) -> Verdict:
    """A `.npy` file of decoded pixels: see the module docstring."""
    try:
        head = os.pread(fd, NPY_PREAMBLE, 0)
        if head[6:8] != b"\x01\x00":
            return Verdict("bad-header", f"is NumPy format version {head[6:7].hex()}.{head[7:8].hex()}; "
                                         "DALI reads version 1.0 (what numpy.save writes for small headers)")
        # Only the header, whose length the preamble gives (usually 118 bytes), not a fixed 64 KB per file.
        head += os.pread(fd, int.from_bytes(head[8:10], "little"), NPY_PREAMBLE)
    except OSError as error:
        return Verdict("unreadable", f"cannot be read: {error.strerror or error}")
    stream = io.BytesIO(head[8:])
    try:
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    except (ValueError, SyntaxError, TypeError) as error:  # first line: numpy's text goes on to suggest allow_pickle
        return Verdict("bad-header", f"has a NumPy signature but its header cannot be parsed "
                                     f"({str(error).splitlines()[0]})")
    if dtype != np.uint8 or fortran_order or len(shape) != 3 or shape[2] != 3:
        return Verdict("bad-dimensions", f"holds a {'Fortran-order ' if fortran_order else ''}{dtype} array of "
                                         f"shape {shape}; decoded pixels are uint8, C order, height x width x 3 "
                                         "(`dali-has prepare --encoding npy` writes them)")
    height, width, _ = shape
    if min(height, width) < 1 or max(height, width) > MAX_SIDE or height * width > MAX_PIXELS:
        return Verdict("bad-dimensions", f"holds {width}x{height} pixels; 1..{MAX_SIDE} a side and at most "
                                         f"{MAX_PIXELS} in all are read")
    expected = 8 + stream.tell() + height * width * 3
    if size != expected:
        return Verdict("bad-header", f"is {size} bytes but its header says {expected} ({width}x{height}x3 "
                                     "pixels): cut short or with trailing data")
    return Verdict(OK, "npy")


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


# ------------------------------------------------------------------------------------------------ the cache

def default_cache_dir() -> Path:
    return cache_root() / "file_check"


def _cache_file(cache_dir: Path, source: str | os.PathLike) -> Path:
    key = hashlib.sha256(os.fsencode(os.path.abspath(source))).hexdigest()[:20]
    return cache_dir / f"{key}.json"


@dataclass
class _Cache:
    """Verdicts in columns (JSON lists parse several times faster than one small list per file): file i is
    names[i] with size[i], mtime_ns[i] and the verdict kinds[verdict[i]], details[verdict[i]]."""

    names: list
    size: list
    mtime_ns: list
    verdict: list
    kinds: list
    details: list

    @classmethod
    def empty(cls) -> _Cache:
        return cls([], [], [], [], [], [])


_KINDS = frozenset({OK, "missing", "unreadable", "not-a-file", "empty", "too-large", "not-an-image", "bad-header",
                    "bad-dimensions", "truncated", "bad-samples"})


def _load_cache(path: Path, source: str) -> _Cache:
    """The cached verdicts; empty when the file is missing, corrupt, of another version or another source."""
    try:
        if not path.is_file():  # missing, or a FIFO (reading it waited for ever)
            return _Cache.empty()
        doc = json.loads(path.read_text(encoding="utf-8"))
        if (doc.get("format"), doc.get("version"), doc.get("source")) != (_CACHE_FORMAT, _CACHE_VERSION, source):
            return _Cache.empty()
        cache = _Cache(*(doc[f.name] for f in fields(_Cache)))
        columns = (cache.names, cache.size, cache.mtime_ns, cache.verdict)
        if (all(type(c) is list and len(c) == len(cache.names) for c in columns)
                and type(cache.kinds) is list and type(cache.details) is list
                and len(cache.kinds) == len(cache.details)
                and all(type(n) is str for n in cache.names)
                and all(type(v) is int for c in columns[1:] for v in c)
                and all(k in _KINDS for k in cache.kinds) and all(type(d) is str for d in cache.details)
                and all(0 <= v < len(cache.kinds) for v in cache.verdict)):
            return cache
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        pass
    return _Cache.empty()


def _save_cache(path: Path, source: str, cache: _Cache) -> None:
    used = sorted(set(cache.verdict))  # verdicts of files no longer listed are dropped
    renumber = {old: new for new, old in enumerate(used)}
    cache = _Cache(cache.names, cache.size, cache.mtime_ns, [renumber[v] for v in cache.verdict],
                   [cache.kinds[v] for v in used], [cache.details[v] for v in used])
    doc = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "source": source,
           **{f.name: getattr(cache, f.name) for f in fields(_Cache)}}
    _replace(path, json.dumps(doc, separators=(",", ":")))


def _replace(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically (readers see the old or the new file, never half of one); False when
    it cannot be written: a read-only or full cache folder costs speed, not correctness."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    except OSError:
        return False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
        return True
    except OSError:
        with _ignored(OSError):
            os.unlink(tmp)
        return False


@contextmanager
def _ignored(*errors) -> Iterator[None]:
    try:
        yield
    except errors:
        pass


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` where the file system offers one; without one, writers still never corrupt
    the cache (atomic replace), they may only check the same files twice."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield


# ---------------------------------------------------------------------------------------------- a dataset

def check_dataset(dataset: Dataset, source: str | os.PathLike, *, cache_dir: Optional[Path] = None,
                  progress: bool = True, check: Optional[Callable[[str], Verdict]] = None, chunk: int = _CHUNK,
                  bar_from: int = 10_000, key: Optional[Callable[[str], Optional[tuple[int, int]]]] = None
                  ) -> CheckedFiles:
    """Check every file of `dataset` (listed from `source`, a folder or file list), using and updating the cache.

    progress: show a bar while files are being checked for the first time (when there are at least `bar_from`).
    check, chunk, key: the check of one file (default `check_file`; `check_shard` for shards), how many files a
        thread takes at a time, and what its cached verdict is kept by (default its size and modification time).
    """
    check, key = check or check_file, key or _stat_key
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    source = os.path.abspath(source)
    cache_path = _cache_file(cache_dir, source)
    root = os.fspath(dataset.root)
    names = [name for name, _ in dataset.samples]
    with _locked(cache_path.with_suffix(".lock")):
        cached = _load_cache(cache_path, source)
        # Usually the listing is the cached one, name for name; else names are looked up.
        same = cached.names == names
        where = None if same else {name: i for i, name in enumerate(cached.names)}
        keys, verdicts, todo = [], [], []
        for i, name in enumerate(names):
            state = key(name if os.path.isabs(name) else f"{root}/{name}")
            j = i if same else where.get(name)
            keys.append(state)
            if state is not None and j is not None and state == (cached.size[j], cached.mtime_ns[j]):
                verdicts.append(cached.verdict[j])
            else:
                verdicts.append(None)
                todo.append(i)
        kinds, details = cached.kinds, cached.details
        if todo:
            table = {verdict: k for k, verdict in enumerate(zip(kinds, details))}
            # Chunks, not one task per file: a thread pool's per-task cost is about that of a cached check.
            chunks = [todo[k:k + chunk] for k in range(0, len(todo), chunk)]
            check_chunk = lambda part: [check(os.path.join(root, names[i])) for i in part]  # noqa: E731
            with ThreadPoolExecutor(_CHECK_THREADS) as pool, tqdm(
                    total=len(todo), unit="file", desc="checking files", leave=False,
                    disable=not progress or len(todo) < bar_from) as bar:
                for part, results in zip(chunks, pool.map(check_chunk, chunks)):
                    for i, verdict in zip(part, results):
                        verdicts[i] = table.setdefault((verdict.kind, verdict.detail), len(table))
                    bar.update(len(part))
            kinds, details = [k for k, _ in table], [d for _, d in table]
        if todo or not same:
            keep = [i for i, key in enumerate(keys) if key is not None]  # the others are checked again next time
            _save_cache(cache_path, source, _Cache([names[i] for i in keep], [keys[i][0] for i in keep],
                                                   [keys[i][1] for i in keep], [verdicts[i] for i in keep],
                                                   kinds, details))
    accepted = tuple(sample for sample, v in zip(dataset.samples, verdicts) if kinds[v] == OK)
    refused = tuple((name, Verdict(kinds[v], details[v])) for name, v in zip(names, verdicts) if kinds[v] != OK)
    refused_list = cache_path.with_name(cache_path.stem + "-refused.jsonl")
    if not refused or not _write_refused(refused_list, dataset.root, refused):
        refused_list = None
    return CheckedFiles(Dataset(dataset.root, accepted, dataset.classes), refused, refused_list)


def _shard_key(path: str) -> Optional[tuple[int, int]]:
    """A shard's cache key: its and its index's sizes summed and the later of their modification times, so a
    rewritten index (e.g. by wds2idx) is checked again."""
    shard, index = _stat_key(path), _stat_key(os.fspath(webdataset.index_path(path)))
    return None if shard is None or index is None else (shard[0] + index[0], max(shard[1], index[1]))


def _stat_key(path: str) -> Optional[tuple[int, int]]:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _write_refused(path: Path, root: Path, refused) -> bool:
    # JSON lines (ASCII, names escaped): any file name, newlines included, stays one line.
    lines = (json.dumps({"path": os.fspath(root / name), "kind": v.kind, "reason": v.detail}) + "\n"
             for name, v in refused)
    return _replace(path, "".join(lines))


def usable_dataset(data: str | os.PathLike | Dataset, *, skip_bad_files: bool = False,
                   cache_dir: Optional[Path] = None, progress: bool = True) -> Dataset:
    """The files of `data` (folder tree, file list or listed Dataset) that DALI may decode, in reader order with
    their labels.

    Refused files raise `UnreadableImageError` naming them, or with skip_bad_files=True are left out with a
    warning that says how many and where they are listed.

    Within one process a folder or file list is listed and checked again only when it changed: a trainer that
    builds a loader per epoch pays for the check once, not every epoch. "Changed" means the list file, the root
    folder or a class folder has another modification time (files were added, removed or renamed); a file
    rewritten in place is seen by the next process.
    """
    if isinstance(data, Dataset):
        checked = check_dataset(data, data.root, cache_dir=cache_dir, progress=progress)
        data = data.root
    else:
        checked = _checked_source(data, cache_dir, progress)
    _refuse_names_dali_cannot_take(checked.accepted)
    if not checked.refused:
        return checked.accepted
    refused, total = len(checked.refused), len(checked.refused) + len(checked.accepted)
    if not skip_bad_files:
        shown = "\n".join(f"  {name}: {verdict.detail}" for name, verdict in checked.refused[:10])
        more = f"\n  ... and {refused - 10} more" if refused > 10 else ""
        listed = f"; all are listed in {checked.refused_list}" if checked.refused_list else ""
        # scan checks encoded images; a data set of decoded pixels is explained by the list above alone
        pixels = any(name.lower().endswith(PIXELS_SUFFIX) for name, _ in checked.refused)
        explains = ("" if pixels else
                    f"; `dali-has scan --data {os.fspath(data)}` explains every file")
        raise UnreadableImageError(
            f"{refused} of {total} files of {os.fspath(data)} cannot be given to DALI's decoder{listed}:\n"
            f"{shown}{more}\nRemove or replace them, or leave them out with skip_bad_files=True "
            f"(`dali-has train --skip-bad-files`){explains}.",
            [os.fspath(checked.accepted.root / name) for name, _ in checked.refused])
    if not checked.accepted.samples:
        raise UnreadableImageError(f"none of the {total} files of {os.fspath(data)} can be decoded; they are "
                                   f"listed with the reasons in {checked.refused_list}",
                                   [os.fspath(checked.accepted.root / name) for name, _ in checked.refused])
    warnings.warn(f"skipping {refused} of {total} files of {os.fspath(data)} that DALI cannot decode; they are "
                  f"listed with the reasons in {checked.refused_list}", UserWarning, stacklevel=2)
    return checked.accepted


def _refuse_names_dali_cannot_take(dataset: Dataset) -> None:
    """DALI's file reader takes its list of names as UTF-8 strings: a name holding other bytes (Python keeps them
    as lone surrogates) made it fail with "Unsupported argument type"."""
    bad = [name for name, _ in dataset.samples if not is_utf8(name)]
    if bad:
        raise ValueError(f"{len(bad)} file names of {str(dataset.root)!r} are not UTF-8 (first {bad[0]!r}), and "
                         "DALI's file reader takes UTF-8 names only: rename them (e.g. `convmv -f latin1 -t utf8 "
                         "-r --notest DIR`), or prepare the data as shards (`dali-has prepare --webdataset`), which "
                         "keep such names")


def check_shard(path: str | os.PathLike) -> Verdict:
    """Check a WebDataset shard: its index against the tar (`webdataset.check_index`, raising), then every image,
    located by the index, with `check_file`'s checks on its bytes (OK, detail "webdataset"; else kind
    "bad-samples" naming the first few), then the labels (raising). The whole shard is read."""
    entries = webdataset.read_index(path)  # a broken index raises, saying how to rewrite it
    bad = []
    size = os.stat(path).st_size
    for entry in entries:
        if max(entry.image_offset + entry.image_size, entry.label_offset + entry.label_size) > size:
            bad.append(f"{webdataset.sample_name(entry.key)} (byte {entry.image_offset}) lies past the shard's end "
                       "(the tar was cut short)")
    if not bad:
        webdataset.check_index(path, entries)
        with open(path, "rb") as tar:
            for entry in entries:
                if entry.image_size > MAX_FILE_BYTES:
                    verdict = _too_large(entry.image_size)
                else:
                    verdict = check_image_bytes(os.pread(tar.fileno(), entry.image_size, entry.image_offset))
                if not verdict.ok:
                    bad.append(f"{webdataset.sample_name(entry.key)} (byte {entry.image_offset}) {verdict.detail}")
    if not bad:
        webdataset.read_labels(path, entries)  # a label the graph cannot read raises (e.g. WebDataset's usual b"3")
        return Verdict(OK, "webdataset")
    shown = "; ".join(bad[:_SHOWN_SAMPLES]) + ("; ..." if len(bad) > _SHOWN_SAMPLES else "")
    return Verdict("bad-samples", f"{len(bad)} of its {len(entries)} samples cannot be given to DALI's decoder: "
                                  f"{shown}")


def check_shards(data, *, cache_dir: Optional[Path] = None, progress: bool = True) -> None:
    """Refuse WebDataset shards (`pipelines.files.list_shards`'s `data`) holding a sample DALI's decoder must not
    see: `UnreadableImageError` naming them. Checked once per shard version (size, modification time) and
    cached like files. Samples cannot be left out of a shard, so `skip_bad_files` does not apply."""
    shards = [os.path.abspath(shard) for shard in list_shards(data)]
    source = data if isinstance(data, (str, os.PathLike)) else shards[0]
    checked = check_dataset(Dataset(Path("/"), tuple((shard, 0) for shard in shards)), source, cache_dir=cache_dir,
                            progress=progress, check=check_shard, chunk=1, bar_from=2, key=_shard_key)
    if checked.refused:
        shown = "\n".join(f"  {name}: {verdict.detail}" for name, verdict in checked.refused[:10])
        more = f"\n  ... and {len(checked.refused) - 10} more shards" if len(checked.refused) > 10 else ""
        raise UnreadableImageError(
            f"{len(checked.refused)} of {len(shards)} WebDataset shards hold samples DALI's decoder must not see "
            f"(it may crash on them):\n{shown}{more}\nSamples cannot be left out of a shard: rewrite the shards "
            "from the source images with `dali-has prepare --webdataset` (it checks every image and leaves out "
            "the bad ones).", [name for name, _ in checked.refused])


_CHECKED: dict[tuple[str, str], tuple[tuple, CheckedFiles]] = {}  # (source, cache) -> (signature, result)
_CHECKED_SOURCES = 4  # sources remembered per process (each holds its listing)


def _checked_source(data: str | os.PathLike, cache_dir: Optional[Path], progress: bool) -> CheckedFiles:
    # checked first: the in-process cache below would take "" for the current folder it may have checked before
    key = (os.path.abspath(checked_path(data)), os.fspath(default_cache_dir() if cache_dir is None else cache_dir))
    signature = _source_signature(key[0])
    remembered = _CHECKED.pop(key, None)
    if signature is None or remembered is None or remembered[0] != signature:
        remembered = (signature, check_dataset(load_dataset(data), data, cache_dir=cache_dir, progress=progress))
    if signature is not None:
        _CHECKED[key] = remembered  # most recent last
        while len(_CHECKED) > _CHECKED_SOURCES:
            del _CHECKED[next(iter(_CHECKED))]
    return remembered[1]


def _source_signature(path: str) -> Optional[tuple]:
    """What changes when files are added to, removed from or renamed in a dataset: the file list's size and
    modification time, or those of the root folder and its (class) sub-folders. None when unreadable."""
    try:
        info = os.stat(path)
        if not stat.S_ISDIR(info.st_mode):
            return ("list", info.st_ino, info.st_size, info.st_mtime_ns)
        folders = []
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir():
                    sub = entry.stat()
                    folders.append((entry.name, sub.st_ino, sub.st_mtime_ns))
        return ("folder", info.st_ino, info.st_mtime_ns, tuple(sorted(folders)))
    except OSError:
        return None
