"""Micro-benchmark: our CPU training pipeline against FFCV alone, the two timed in alternation.

`dali-has bench` times all its data variants in one alternation (DALI in eight forms, torchvision twice, FFCV
twice), so the worker threads and processes of a dozen loaders share two cores with every timed run; its
rounds scatter widely (DALI prepared NHWC 3,542-4,240 img/s in one run). This times only the pair the speed
goal compares: `make_loader` on a prepared copy (NHWC float32 224x224, fused resize + the paper's
Hide-and-Seek) against FFCV's ImageNet pipeline (`train.bench.run.ffcv_batches`, no HaS) on the same images,
stored in FFCV's raw mode (decoded pixels) and, with --jpg, as JPEG too; with --npy, also `make_loader` on
the same source prepared as decoded pixels (`dali-has prepare --encoding npy`), which compares like with like
with FFCV's raw mode. Needs `ffcv` importable (an optional extra; the project does not depend on it).

    python -m train.bench.ffcv_head_to_head --prepared DIR [--npy NPY_DIR] --json ffcv_head_to_head.json
"""
from __future__ import annotations

import argparse
import contextlib
import statistics

from dali_has import HaSConfig
from pipelines import TrainAugment, make_loader
from train.bench.run import BenchSettings, ffcv_batches, ffcv_unavailable_reason
from train.bench.timing import SEED, Measurement, RunRecord, add_timing_arguments, batch_sizes, measure, write_json

DALI = "DALI prepared NHWC fused + HaS"
DALI_NPY = "DALI prepared npy NHWC fused + HaS"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", required=True, help="a folder written by `dali-has prepare`")
    p.add_argument("--jpg", action="store_true", help="also FFCV reading the images stored as JPEG")
    p.add_argument("--npy", metavar="DIR", help="also our pipeline on a `dali-has prepare --encoding npy` copy of "
                                                "the same source (decoded pixels, like FFCV's raw mode)")
    # Warm-up longer than FFCV's queue of 3 batches, so every timed batch is made while the clock runs.
    add_timing_arguments(p, iters=40, runs=7, warmup=8, threads_help="DALI threads = FFCV workers")
    return p.parse_args(argv)


def round_ratios(a: Measurement, b: Measurement) -> dict:
    """a / b per round of the alternation (the runs were timed side by side): median, min, max."""
    ratios = [x / y for x, y in zip(a.runs, b.runs)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    reason = ffcv_unavailable_reason()
    if reason is not None:
        raise SystemExit(f"{reason}; install ffcv (with its OpenCV and libturbojpeg) to compare with it")
    settings = BenchSettings(device="cpu", prepared=args.prepared, batch_size=args.batch_size,
                             threads=(args.num_threads,))
    record = RunRecord()
    storages = ("raw", "jpg") if args.jpg else ("raw",)
    augment = TrainAugment(has=HaSConfig(), has_impl="fused", resize_impl="fused")
    ours = {DALI: args.prepared, **({DALI_NPY: args.npy} if args.npy else {})}
    with contextlib.ExitStack() as stack:
        streams = {}
        for name, folder in ours.items():
            loader = stack.enter_context(make_loader(folder, train=True, batch_size=args.batch_size,
                                                     augment=augment, device="cpu", seed=SEED,
                                                     num_threads=args.num_threads, layout="NHWC"))
            streams[name] = batch_sizes(loader)
        for storage in storages:
            streams[f"FFCV {storage}"] = ffcv_batches(settings, args.prepared, args.num_threads, storage)
        for batches in streams.values():
            stack.callback(batches.close)
        timed = measure(streams, warmup=args.warmup, iters=args.iters, runs=args.runs)
    report = {"settings": vars(args), "img_s": {name: m.to_dict() for name, m in timed.items()},
              "ratios": {f"{'DALI npy' if name == DALI_NPY else 'DALI'}/FFCV {s}": round_ratios(timed[name],
                                                                                            timed[f"FFCV {s}"])
                         for name in ours for s in storages},
              **record.facts()}
    for name, m in timed.items():
        print(f"{name}: {m.median:.0f} img/s (runs {' '.join(f'{r:.0f}' for r in m.runs)})")
    for name, r in report["ratios"].items():
        print(f"{name}: {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})")
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
