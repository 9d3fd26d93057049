"""Files a command writes in a folder of its own (a `dali-has prepare` output, a training run): opened without
following a link put in their place, which would write where the link points, outside the folder; and one
writing process at a time, by a lock file held while it writes (two at once mixed their files)."""
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


@contextmanager
def sole_writer(lock: Path, busy: str) -> Iterator[None]:
    """Hold the lock file `lock` while the block runs; ValueError(`busy`) when another process holds it."""
    with open_own(lock, append=True) as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(busy) from None
        yield
