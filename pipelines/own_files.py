"""Files a command writes in a folder of its own (a `dali-has prepare` output, a training run): opened without
following a link put in their place, which would write where the link points, outside the folder; written whole
or not at all (under a temporary name, then renamed); and one writing process at a time, by a lock file held
while it writes (two at once mixed their files)."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def open_own(path: Path, append: bool = False) -> BinaryIO:
    """`path` opened for binary writing (truncated, or appended to), refusing a link in its place, and anything
    but a regular file (opening a FIFO for writing waited for a reader for ever)."""
    not_a_file = (f"{str(path)!r} is not a regular file (a FIFO or a device?); dali-has writes its own files in "
                  "this folder: remove it")
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ValueError(f"{str(path)!r} is a link; dali-has writes its own files in this folder and follows no "
                             "link there: remove it") from None
        if error.errno == errno.ENXIO:  # a FIFO no process reads
            raise ValueError(not_a_file) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(not_a_file)
    os.set_blocking(fd, True)
    return open(fd, "ab" if append else "wb")


TEMPORARY_SUFFIX = ".partial"


def temporary(path: Path) -> Path:
    """Where `written_whole` writes `path` until it is complete (what a killed writer leaves behind)."""
    return path.with_name(path.name + TEMPORARY_SUFFIX)


@contextmanager
def written_whole(path: Path) -> Iterator[BinaryIO]:
    """A binary file whose content becomes `path` when the block ends: written under `temporary(path)` through no
    link (`open_own`) and renamed into place, so a reader sees the old file or the new one, never half of one, and
    a link at `path` is replaced, not written through. When the block or the rename fails, the temporary file is
    removed and `path` is as it was. For files one process writes; a cache many processes share needs unique
    temporary names instead (`pipelines.file_check`)."""
    path = Path(path)
    partial = temporary(path)
    file = open_own(partial)
    try:
        with file:
            yield file
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


@contextmanager
def sole_writer(lock: Path, busy: str) -> Iterator[None]:
    """Hold the lock file `lock` while the block runs; ValueError(`busy`) when another process holds it."""
    with open_own(lock, append=True) as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(busy) from None
        yield
