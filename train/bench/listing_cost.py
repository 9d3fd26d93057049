"""What the loader's listing check costs (`pipelines.file_check`): cold, and with its verdict cache.

    python -m train.bench.listing_cost [--files 100000] [--runs 5] [--dir DIR] [--json FILE]

A tree of tiny JPEGs (100 class folders, one 8x8 JPEG of a few hundred bytes copied into each file) is written
once into DIR (kept and reused when it already holds the same number of files). Three things are timed:
* listing: `load_dataset` alone, what the loader paid before the check (one `scandir` per folder, filters);
* cold: listing + `check_dataset` with an empty verdict cache (each file opened, its first bytes read, its header
  parsed by nvImageCodec); the operating system's page cache is warm after the first run, as it would be on a
  second training run; a first run on cold storage also waits for the disk;
* cached: listing + `check_dataset` with the cache the cold run wrote (one `stat` per file and the JSON cache),
  what a new process (the next run) pays;
* again: `usable_dataset` on the same unchanged folder a second time in one process, what each later epoch of a
  trainer that builds a loader per epoch pays (a `stat` of the root and the class folders).
Each is run once untimed, then `--runs` times in alternation; reported are the medians and the per-file costs.
"""
from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.file_check import check_dataset, usable_dataset
from pipelines.files import load_dataset
from train.bench.timing import RunRecord, write_json

CLASSES = 100


def make_tree(root: Path, files: int) -> Path:
    """`files` tiny JPEGs in CLASSES class folders under root; reused when already there."""
    marker = root / ".listing_cost_files"
    if marker.is_file() and marker.read_text() == str(files):
        return root
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG")
    data = out.getvalue()
    for i in range(files):
        folder = root / f"c{i % CLASSES:03d}"
        if i < CLASSES:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:07d}.jpg").write_bytes(data)
    marker.write_text(str(files))
    return root


def measure(root: Path, runs: int) -> dict:
    files = len(load_dataset(root))

    def listing(_cache: Path) -> None:
        load_dataset(root)

    def checked(cache: Path) -> None:
        result = check_dataset(load_dataset(root), root, cache_dir=cache, progress=False)
        assert not result.refused, result.refused[:3]

    def again(cache: Path) -> None:
        usable_dataset(root, cache_dir=cache, progress=False)

    with tempfile.TemporaryDirectory() as scratch:
        warm_cache = Path(scratch) / "warm"
        checked(warm_cache)  # untimed: writes the cache the cached runs use, warms the page cache
        listing(warm_cache)
        again(warm_cache)  # untimed: the process now remembers the checked folder
        variants = {"listing": listing, "cold": checked, "cached": checked, "again": again}
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for run in range(runs):
            for name, variant in variants.items():
                start = time.perf_counter()
                variant(Path(scratch) / f"cold{run}" if name == "cold" else warm_cache)
                seconds[name].append(time.perf_counter() - start)
        cache_bytes = sum(p.stat().st_size for p in warm_cache.glob("*.json"))
    median = {name: statistics.median(s) for name, s in seconds.items()}
    return {"files": files, "runs": runs, "run_seconds": seconds,
            "median_s": median,
            "us_per_file": {name: 1e6 * s / files for name, s in median.items()},
            "check_overhead_s": {"cold": median["cold"] - median["listing"],
                                 "cached": median["cached"] - median["listing"]},
            "cache_bytes": cache_bytes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.bench.listing_cost", description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=100_000, help="files in the generated tree (default 100000)")
    p.add_argument("--runs", type=int, default=5, help="timed runs of each variant (default 5)")
    p.add_argument("--dir", help="where the tree is written and kept (default: a folder under the system temp)")
    p.add_argument("--json", metavar="FILE", help="write every run and the medians here")
    args = p.parse_args(argv)
    if args.files < 1 or args.runs < 1:
        p.error("--files and --runs must be at least 1")
    root = Path(args.dir) if args.dir else Path(tempfile.gettempdir()) / f"dali_has_listing_{args.files}"
    tree = make_tree(root, args.files)
    record = RunRecord()
    result = measure(tree, args.runs) | record.facts()
    result["command"] = " ".join(["python -m train.bench.listing_cost", *(argv if argv is not None else sys.argv[1:])])
    write_json(args.json, result)
    m, us = result["median_s"], result["us_per_file"]
    print(f"{result['files']} files, median of {args.runs} runs: listing {m['listing']:.3f} s "
          f"({us['listing']:.1f} us per file); listing + check, cold {m['cold']:.3f} s ({us['cold']:.1f} us per "
          f"file); cached {m['cached']:.3f} s ({us['cached']:.1f} us per file); again in the same process "
          f"{m['again']:.4f} s; cache {result['cache_bytes']} bytes (load average "
          f"{result['load_average']['end'][0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
