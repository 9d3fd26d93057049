"""`dali-has mean --data DATA`: per-channel mean and std of a dataset, the fill value Hide-and-Seek needs."""
from __future__ import annotations

import argparse
import json

from pipelines.settings import PASS_BATCH_SIZE, default_device
from train.commands.arguments import add_data, add_device, add_no_progress, add_num_threads, output_file


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "mean", help="per-channel mean and std of a dataset's pixels (decoded by DALI)",
        description="Decode every image of DATA once with DALI and print the exact, pixel-weighted per-channel "
                    "(RGB) mean and population std, on the 0..255 and the 0..1 scale. Normalizing with this mean "
                    "makes Hide-and-Seek's fill exactly 0. Run `dali-has scan` on unchecked data first.")
    add_data(p)
    p.add_argument("--batch-size", type=int, default=PASS_BATCH_SIZE,
                   help="images per DALI batch (default %(default)s)")
    add_num_threads(p)
    add_device(p)
    p.add_argument("--json", metavar="FILE", type=output_file(".json"), help="also write the statistics as JSON")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.dataset_mean import dataset_mean

    stats = dataset_mean(args.data, batch_size=args.batch_size, num_threads=args.num_threads,
                         device=args.device or default_device(), progress=not args.no_progress)
    unit = stats.scaled(255)
    print(f"{stats.images} images, {stats.pixels} pixels")
    print("mean (0..255): " + " ".join(f"{v:.4f}" for v in stats.mean))
    print("std  (0..255): " + " ".join(f"{v:.4f}" for v in stats.std))
    print("mean (0..1):   " + " ".join(f"{v:.6f}" for v in unit.mean))
    print("std  (0..1):   " + " ".join(f"{v:.6f}" for v in unit.std))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"images": stats.images, "pixels": stats.pixels, "mean": stats.mean, "std": stats.std,
                       "mean_01": unit.mean, "std_01": unit.std}, out, indent=1)
    return 0
