"""The options every `dali-has` command spells the same way: one vocabulary, one place.

`--data` is the dataset of every command (never positional); `--num-threads` is always DALI's CPU threads;
Hide-and-Seek options start with `--has-`; `--device` is cpu or gpu.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from fnmatch import fnmatch
from pathlib import Path

from dali_has.spec import PAPER_P_HIDE, PAPER_PATCH_SIZES
from pipelines.files import IMAGE_FILTERS
from pipelines.settings import DEVICES
from pipelines.webdataset import INDEX_SUFFIX, SHARD_SUFFIX

DATA_HELP = "dataset folder DIR/<class>/<image>, or a DALI file list ('path label' lines)"
# What the loader reads besides: WebDataset shards.
LOADER_DATA_HELP = DATA_HELP + ", or a folder of WebDataset .tar shards (`dali-has prepare --webdataset`)"


def spaced(values) -> str:
    """A default of several values as the command line takes them: `0 16 32`."""
    return " ".join(map(str, values))


def add_data(p: argparse.ArgumentParser, help: str = DATA_HELP, required: bool = True) -> None:
    p.add_argument("--data", required=required, metavar="DATA", help=help)


DEVICE_DEFAULT_HELP = "default gpu when CUDA is visible"


def add_device(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """--device; None when not given: the command takes `pipelines.settings.default_device()` (every command
    alike: a GPU machine trained on its CPU unless told, while demo and bench took the GPU)."""
    p.add_argument("--device", choices=DEVICES, help=(help or "cpu, or gpu (nvJPEG / hardware decoder and GPU "
                                                            "augmentation)") + f"; {DEVICE_DEFAULT_HELP}")


def add_num_threads(p: argparse.ArgumentParser, *, sweep: bool = False) -> None:
    if sweep:
        p.add_argument("--num-threads", type=int, nargs="+", metavar="N",
                       help="DALI CPU threads (= torchvision workers); several values are swept "
                            "(default: usable cores)")
    else:
        p.add_argument("--num-threads", type=int, metavar="N",
                       help="DALI CPU threads (default: usable cores / processes on this node)")


def add_has(p: argparse.ArgumentParser) -> None:
    """--has-patch-sizes and --has-p-hide; not given, they are the paper's (HaSConfig's defaults)."""
    p.add_argument("--has-patch-sizes", type=int, nargs="+", metavar="S",
                   help="Hide-and-Seek grid cell sizes in pixels of the network input, 0 = no hiding (default "
                        f"{spaced(PAPER_PATCH_SIZES)}, p {PAPER_P_HIDE})")
    p.add_argument("--has-p-hide", type=float, metavar="P", help="probability that a cell is hidden")


def add_model_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture option, e.g. pooling=max or batch_norm=true (repeatable)")


def add_no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def parse_model_opts(items: list[str]) -> dict:
    """`KEY=VALUE` strings as a dict; true/false become booleans, numbers numbers, anything else stays text."""
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-opt {item!r}: expected KEY=VALUE")
        low = value.lower()
        opts[key] = True if low == "true" else False if low == "false" else _number_or_text(value)
    return opts


def _number_or_text(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value

# Names an output file must not take: it would overwrite, or later be read as, a sample.
DATA_FILE_PATTERNS = tuple(p.lower() for p in IMAGE_FILTERS) + (f"*{SHARD_SUFFIX}", f"*{INDEX_SUFFIX}")


def input_path(value: str) -> str:
    """An argparse `type` for a file or folder a command reads: never an empty path (an unset shell variable),
    which was read as the current folder and named as '.' in the error."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path; give the file or folder to read")
    return value


def output_folder(value: str) -> str:
    """An argparse `type` for a folder a command writes: never an empty path (an unset shell variable, `--out
    "$OUT"`), which would write into the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path; give the folder to write")
    return value


def output_among_inputs(command: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """What is wrong when an output file option (`output_file`) would overwrite what the command reads, or another
    output: the --data path itself, or a path inside a folder the command reads whole (`args.reads`, set by
    commands whose data folder holds more than images: `action-demo --json DATA/test.json` overwrote the test
    index it had just scored); None when nothing is. (Images inside --data are protected by `output_file`'s
    name rules.)"""
    data = Path(args.data).resolve() if getattr(args, "data", None) else None
    whole = [Path(value).resolve() for value in (getattr(args, name, None) for name in getattr(args, "reads", ()))
             if value]
    written: dict[Path, str] = {}
    for action in command._actions:
        value = getattr(args, action.dest, None)
        if not getattr(action.type, "writes_file", False) or not value:
            continue
        path = Path(os.path.realpath(value))  # Path.resolve raises on a symbolic link loop
        source = path if path == data else next((s for s in whole if path == s or s in path.parents), None)
        if source is not None:
            return (f"{action.option_strings[0]} {value} would {'overwrite' if path == source else 'write inside'} "
                    f"{source}, which this command reads; write it outside the data set")
        if path in written:  # `scan --write-list o.json --json o.json`: the list was written, then replaced
            return (f"{written[path]} and {action.option_strings[0]} both name {value}; give each output a file "
                    "of its own")
        written[path] = action.option_strings[0]
    return None


def output_file(suffix: str | None = None):
    """An argparse `type` for a file a command writes, checked before the command does any work (a bench run of
    minutes used to fail at the end on a folder given as --json): not a folder, in a folder that exists, named
    `*suffix` when given, otherwise never named like a data file (an image, a .npy, a shard: `scan --write-list
    DIR/c0/00005.jpg` overwrote a training image; a required .json suffix rules that out too)."""

    def check(value: str) -> str:
        path = Path(value)
        if suffix is not None and path.suffix.lower() != suffix:
            raise argparse.ArgumentTypeError(f"{value!r}: expected a file name ending in {suffix}")
        if suffix is None and any(fnmatch(path.name.lower(), pattern) for pattern in DATA_FILE_PATTERNS):
            raise argparse.ArgumentTypeError(f"{value!r} is named like a data file; give another file name")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{value!r} is a folder; give a file path")
        if path.exists() and not path.is_file():  # a FIFO: the command hung at its end, writing into it
            raise argparse.ArgumentTypeError(f"{value!r} is not a regular file; give a file path")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"{value!r}: its folder {str(path.parent)!r} does not exist")
        if not can_write_in(path.parent):
            raise argparse.ArgumentTypeError(f"{value!r}: its folder {str(path.parent)!r} is not writable here "
                                             "(read-only or not yours); give a file in a folder you can write")
        return value

    check.writes_file = True  # output_among_inputs looks for it
    return check


def can_write_in(folder: Path) -> bool:
    """Whether this process can create a file in `folder`, tried with a file deleted at once: `os.access` says yes
    to root in folders no one can write in (/proc) and cannot see every read-only mount."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False

