"""Prepared images read as a folder vs as WebDataset shards, and the cost of DALI checkpointing (which the
trainer turns on to resume exactly).

    python -m train.bench.prepared_readers [--batch-size 64] [--iters 40] [--runs 5] [--json FILE]

Data: the bench's generated JPEGs prepared by `dali-has prepare` (shorter side 256), once as a folder and once
as shards (both cached). Every stream is the training pipeline with Hide-and-Seek (`TrainAugment` defaults
otherwise), NHWC float32 224², timed with `train.bench.timing.measure`: warm-up of three prefetch queues, the
streams in alternation, median of the runs.
"""
from __future__ import annotations

import argparse
import os
import sys

from dali_has import HaSConfig
from pipelines import TrainAugment, make_loader
from pipelines.settings import default_num_threads
from train.bench.data import bench_prepared, bench_prepared_shards
from train.bench.timing import batch_sizes, measure, write_json

QUEUE = 2  # DALI's prefetch queue depth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.bench.prepared_readers", description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--iters", type=int, default=40, help="timed batches per run (default 40)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per stream (default 5)")
    p.add_argument("--num-threads", type=int, help="DALI threads (default: usable cores)")
    p.add_argument("--json", metavar="FILE", help="write every run and the load to FILE")
    args = p.parse_args(argv)
    threads = args.num_threads or default_num_threads()
    common = dict(train=True, batch_size=args.batch_size, augment=TrainAugment(has=HaSConfig()), seed=0,
                  num_threads=threads, layout="NHWC")
    sources = {"folder": str(bench_prepared()), "webdataset": str(bench_prepared_shards())}
    load = os.getloadavg()[0]
    loaders = {"folder": make_loader(sources["folder"], **common),
               "webdataset": make_loader(sources["webdataset"], **common),
               "folder, checkpointing": make_loader(sources["folder"], checkpointing=True, **common)}
    try:
        timed = measure({name: batch_sizes(loader) for name, loader in loaders.items()}, warmup=3 * QUEUE,
                        iters=args.iters, runs=args.runs)
    finally:
        for loader in loaders.values():
            loader.close()
    result = {"img_s": {name: m.median for name, m in timed.items()},
              "runs": {name: m.to_dict() for name, m in timed.items()}, "sources": sources,
              "batch_size": args.batch_size, "threads": threads,
              "load_average": {"start": load, "end": os.getloadavg()[0]}, "cores": os.cpu_count()}
    for name, rate in result["img_s"].items():
        print(f"{name}: {rate:.1f} img/s (runs {' '.join(f'{r:.1f}' for r in timed[name].runs)})")
    print(f"load average {load:.1f} at start, {result['load_average']['end']:.1f} at end, {os.cpu_count()} cores")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
