"""What `InputProfiler.wrap` costs per batch: a loop over N prebuilt batches, with and without it.

    python -m train.bench.profiler_overhead [--batches 100000] [--runs 7] [--timing cpu|cuda] [--json FILE]

The loop body is empty and the batches are prebuilt ((images [64, 3, 8, 8], labels [64]) tuples in a list), so
the difference between the two loops is the profiler's own work: two clock reads (or two CUDA events), counting
the samples and the bookkeeping of a cycle, plus `summary()` at the end. The loops run in alternation (plain,
wrapped, plain, ...) after one untimed run of each, every wrapped run with a fresh profiler, so a machine whose
load drifts affects both alike. Reported: each loop's median time per batch and their difference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from pipelines.profiler import InputProfiler
from train.bench.timing import RunRecord, write_json


def measure(batches: int, runs: int, timing: str) -> dict:
    data = [(torch.zeros(64, 3, 8, 8), torch.zeros(64, dtype=torch.int64))] * batches

    def plain() -> None:
        for _ in data:
            pass

    def wrapped() -> None:
        profiler = InputProfiler(timing=timing)
        for _ in profiler.wrap(data):
            pass
        profiler.summary()

    loops = {"plain": plain, "wrapped": wrapped}
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    for loop in loops.values():
        loop()  # untimed: first-call costs
    for _ in range(runs):
        for name, loop in loops.items():
            start = time.perf_counter()
            loop()
            seconds[name].append(time.perf_counter() - start)
    us = {name: 1e6 * statistics.median(s) / batches for name, s in seconds.items()}
    return {"timing": timing, "batches": batches, "runs": runs, "run_seconds": seconds,
            "plain_us_per_batch": us["plain"], "wrapped_us_per_batch": us["wrapped"],
            "overhead_us_per_batch": us["wrapped"] - us["plain"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.bench.profiler_overhead", description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, default=100_000, help="batches per run (default 100000)")
    p.add_argument("--runs", type=int, default=7, help="timed runs of each loop (default 7)")
    p.add_argument("--timing", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--json", metavar="FILE", help="write every run and the machine to FILE")
    args = p.parse_args(argv)
    for name in ("batches", "runs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.timing == "cuda" and not torch.cuda.is_available():
        p.error("--timing cuda needs a CUDA device")
    record = RunRecord()
    result = measure(args.batches, args.runs, args.timing) | record.facts()
    print(f"InputProfiler overhead ({args.timing} timing): {result['overhead_us_per_batch']:.2f} us per batch "
          f"(plain loop {result['plain_us_per_batch']:.3f} us, wrapped {result['wrapped_us_per_batch']:.3f} us "
          f"per batch; median of {args.runs} runs of {args.batches} batches; load average "
          f"{result['load_average']['end'][0]:.1f} on {result['cpu_count']} cores)")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
