"""`file_label`: each sample's label found by its file's name, for a reader that gives no labels.

`fn.readers.numpy` reads `.npy` files in DALI's thread pool from memory-mapped files; `fn.readers.file`, the
reader that gives labels, copies every file whole on one loader thread and leaves the pixels to be copied out
once more by `fn.decoders.numpy`. The numpy reader gives no labels, but it gives each sample's file name,
exactly as listed in its `files` (the `source_info` property); the plugin's `fn.dali_has.file_label` looks the
label up by that name in a table built once, when the pipeline is built: the names joined into one string
(NUL-separated, a character no file name holds) and searched in sorted order. At ImageNet's 1.28 million names
the operator adds 1.1 s to the pipeline's build and 154 MB to the process once built (the joined names held by
Python, by DALI's argument and by the operator, and the labels; a hash map of strings took 318 MB).
"""
from __future__ import annotations

from collections.abc import Sequence

from dali_has import fused, validate


def one_label_per_name(names: Sequence[str], labels: Sequence[int]) -> bool:
    """Whether a name finds its label: no name is listed twice with different labels (a file list may)."""
    label_of: dict[str, int] = {}
    return all(label_of.setdefault(name, label) == label for name, label in zip(names, labels, strict=True))


def file_label(images, *, names: Sequence[str], labels: Sequence[int]):
    """An int64 scalar per sample of `images`: the label of its file in (names, labels).

    images: the output of a reader whose `source_info` is the file name as listed, e.g. fn.readers.numpy;
        `names` are the names it was given (its `files`).
    labels: whole numbers in 0..2**31-1, one per name.
    Raises RuntimeError when the plugin is unavailable (`fused.load()` is False), ValueError for other names or
    labels, and when a name has two labels (`one_label_per_name`).
    """
    if not fused.load():
        raise RuntimeError(f"the plugin's file_label operator is unavailable: {fused.unavailable_reason()}")
    names = [] if isinstance(names, (str, bytes)) else list(names)
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError("names: give a list of the reader's file names (str), at least one")
    labels = [validate.whole_number(f"labels[{i}]", label, maximum=validate.MAX_LABEL)
              for i, label in enumerate(labels)]
    if len(labels) != len(names):
        raise ValueError(f"{len(names)} names and {len(labels)} labels: give one label per name")
    if not one_label_per_name(names, labels):
        label_of: dict[str, int] = {}
        name = next(n for n, label in zip(names, labels) if label_of.setdefault(n, label) != label)
        raise ValueError(f"{name!r} is listed with two different labels; read such a list with fn.readers.file")
    from nvidia.dali import fn

    joined = "\0".join(names)
    if joined.count("\0") != len(names) - 1 or "" in names:
        raise ValueError("a name is empty or holds a NUL character, which no file name can")
    return fn.dali_has.file_label(fn.get_property(images, key="source_info"), names=joined, labels=list(labels))
