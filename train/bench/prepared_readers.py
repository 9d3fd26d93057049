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
import sys

from dali_has import HaSConfig
from pipelines import TrainAugment, make_loader
from pipelines.settings import default_num_threads
from train.bench.data import bench_prepared, bench_prepared_shards
from train.bench.timing import (
    SEED,
    WARMUP_QUEUES,
    RunRecord,
    add_timing_arguments,
    batch_sizes,
    measure,
    write_json,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.bench.prepared_readers", description=__doc__.split("\n")[0])
    add_timing_arguments(p, iters=40, runs=5, warmup=None, threads=None)
    args = p.parse_args(argv)
    threads = args.num_threads or default_num_threads()
    common = dict(train=True, batch_size=args.batch_size, augment=TrainAugment(has=HaSConfig()), seed=SEED,
                  num_threads=threads, layout="NHWC")
    sources = {"folder": str(bench_prepared()), "webdataset": str(bench_prepared_shards())}
    record = RunRecord()
    loaders = {"folder": make_loader(sources["folder"], **common),
               "webdataset": make_loader(sources["webdataset"], **common),
               "folder, checkpointing": make_loader(sources["folder"], checkpointing=True, **common)}
    try:
        depth = max(loader.pipeline.prefetch_queue_depth for loader in loaders.values())
        timed = measure({name: batch_sizes(loader) for name, loader in loaders.items()},
                        warmup=WARMUP_QUEUES * depth, iters=args.iters, runs=args.runs)
    finally:
        for loader in loaders.values():
            loader.close()
    result = {"img_s": {name: m.median for name, m in timed.items()},
              "runs": {name: m.to_dict() for name, m in timed.items()}, "sources": sources,
              "batch_size": args.batch_size, "threads": threads, **record.facts()}
    for name, rate in result["img_s"].items():
        print(f"{name}: {rate:.1f} img/s (runs {' '.join(f'{r:.1f}' for r in timed[name].runs)})")
    load = result["load_average"]
    print(f"load average {load['start'][0]:.1f} at start, {load['end'][0]:.1f} at end, {result['cpu_count']} cores")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
