"""Files a command writes in a folder of its own (a `dali-has prepare` output, a training run): opened without
following a link put in their place, which would write where the link points, outside the folder; and one
writing process at a time, by a lock file held while it writes (two at once mixed their files)."""
from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def open_own(path: Path, append: bool = False) -> BinaryIO:
    """`path` opened for binary writing (truncated, or appended to), refusing a link in its place."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    try:
        return open(os.open(path, flags, 0o666), "ab" if append else "wb")
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ValueError(f"{str(path)!r} is a link; dali-has writes its own files in this folder and follows no "
                             "link there: remove it") from None
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
