"""`dali-has synth`: write the generated weakly-supervised localization dataset (see `train.wsol.synth`)."""
from __future__ import annotations

import argparse

from train.commands.arguments import add_no_progress, output_folder
from train.wsol.synth import SynthConfig, generate


def register(subparsers) -> None:
    defaults = SynthConfig()
    p = subparsers.add_parser(
        "synth", help="generate the synthetic WSOL dataset (JPEGs + true boxes)",
        description="Generate a weakly-supervised localization dataset: objects with a small, fully reliable "
                    "part and a larger, less reliable body on cluttered backgrounds (see train/wsol/synth.py). "
                    "Writes OUT/train/<class>/*.jpg, OUT/test/<class>/*.jpg, OUT/boxes.json, OUT/dataset.json "
                    "and OUT/README.txt.")
    p.add_argument("--out", type=output_folder, required=True, help="output folder; must be absent or empty")
    p.add_argument("--n-train", type=int, default=defaults.n_train, help="training images (default %(default)s)")
    p.add_argument("--n-test", type=int, default=defaults.n_test, help="held-out images (default %(default)s)")
    p.add_argument("--size", type=int, default=defaults.size, help="image side in pixels (default %(default)s)")
    p.add_argument("--classes", type=int, default=defaults.classes, help="number of classes (default %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="base seed (default %(default)s)")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = SynthConfig(size=args.size, classes=args.classes, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    info = generate(args.out, cfg, progress=not args.no_progress)
    counts = info["counts"]
    print(f"wrote {counts['train']} train + {counts['test']} test images of {cfg.classes} classes to {args.out}; "
          f"training-set mean RGB {info['mean_rgb']}")
    return 0
