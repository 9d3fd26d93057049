"""How long an epoch waits for its first batch: a loader per epoch (what the trainer did) vs one loader per run.

    python -m train.bench.epoch_start [--images 100000] [--epochs 4] [--batch-size 64] [--crop 16] [--json FILE]

Data: `--images` tiny JPEGs (16×16, a few hundred bytes each, 100 class folders; generated once into the cache),
so what grows with the data set — listing and sorting the files, opening the reader — is not hidden behind
decoding. Each epoch is consumed completely by a loop that does nothing else, on the training pipeline
(shuffled, random-resized-crop, flip, normalize; no Hide-and-Seek).

  per epoch   every epoch builds a new `make_loader` (seed base + 10007·epoch, as the trainer did): the delay is
              from the loader's construction to the first batch, i.e. from the start of the epoch's `for`;
  one loader  one `make_loader` for all epochs: the delay is from `iter()` to the first batch.

Epoch 1 always builds a pipeline; the figure that differs is the median over epochs 2..N. The two ways run in
alternation, epoch by epoch (the per-epoch one first), so a machine whose load drifts affects both alike.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from pipelines import make_loader
from train.bench.data import tiny_jpegs
from train.bench.timing import SEED, RunRecord, write_json
from train.trainer import EPOCH_SEED_STRIDE


def measure(data: str, *, epochs: int, batch_size: int, crop: int, num_threads: int | None) -> dict:
    settings = dict(train=True, batch_size=batch_size, crop=crop, num_threads=num_threads)
    delays: dict[str, list[float]] = {"per_epoch": [], "one_loader": []}
    samples: dict[str, list[int]] = {"per_epoch": [], "one_loader": []}
    one = None
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            with make_loader(data, seed=SEED + EPOCH_SEED_STRIDE * epoch, **settings) as fresh:
                delays["per_epoch"].append(_first_batch_then_rest(fresh, start, samples["per_epoch"]))
            start = time.perf_counter()
            if one is None:
                one = make_loader(data, seed=SEED, **settings)
            delays["one_loader"].append(_first_batch_then_rest(one, start, samples["one_loader"]))
    finally:
        if one is not None:
            one.close()
    return {"images": samples["per_epoch"][0], "epochs": epochs, "batch_size": batch_size, "crop": crop,
            "num_threads": num_threads, "delay_s": delays, "epoch_samples": samples,
            "first_epoch_delay_s": {name: d[0] for name, d in delays.items()},
            "later_epochs_median_delay_s": {name: statistics.median(d[1:]) for name, d in delays.items()}}


def _first_batch_then_rest(loader, start: float, counts: list[int]) -> float:
    """Seconds from `start` to the first batch of a `for` over `loader`; then the rest of the epoch is drawn."""
    batches = iter(loader)
    _, labels = next(batches)
    delay = time.perf_counter() - start
    counts.append(len(labels) + sum(len(labels) for _, labels in batches))
    return delay


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.bench.epoch_start", description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=100_000, help="tiny JPEGs in the data set (default 100000)")
    p.add_argument("--epochs", type=int, default=4, help="epochs of each way (default 4)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--crop", type=int, default=16)
    p.add_argument("--num-threads", type=int, help="DALI threads (default: usable cores)")
    p.add_argument("--json", metavar="FILE", help="write every delay and the machine to FILE")
    args = p.parse_args(argv)
    if args.epochs < 2:
        p.error("--epochs must be >= 2: epoch 1 builds a pipeline either way")
    data = str(tiny_jpegs(args.images))
    record = RunRecord()
    result = measure(data, epochs=args.epochs, batch_size=args.batch_size, crop=args.crop,
                     num_threads=args.num_threads)
    result.update(data=data, **record.facts())
    first, later, load = result["first_epoch_delay_s"], result["later_epochs_median_delay_s"], result["load_average"]
    print(f"{result['images']} files, batch {args.batch_size}, {args.epochs} epochs, load average "
          f"{load['start'][0]:.1f} at start, {load['end'][0]:.1f} at end ({result['cpu_count']} cores)")
    print(f"epoch 1 (both build a pipeline): per-epoch loader {first['per_epoch']:.3f} s, one loader "
          f"{first['one_loader']:.3f} s")
    print(f"epochs 2..{args.epochs}, median delay to the first batch: a loader per epoch {later['per_epoch']:.3f} s, "
          f"one loader for the run {later['one_loader']:.4f} s")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
