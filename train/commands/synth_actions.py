"""`dali-has synth-actions`: write the generated action-localization feature set (see `train.actions.synth`)."""
from __future__ import annotations

import argparse
import os

from train.actions.synth import SynthActionsConfig, generate
from train.commands.arguments import add_no_progress, output_folder


def register(subparsers) -> None:
    defaults = SynthActionsConfig()
    p = subparsers.add_parser(
        "synth-actions", help="generate the synthetic temporal action localization feature set",
        description="Generate per-video feature sequences [T, D] with one action each: a long extent with a weak "
                    "class cue and a short, fully reliable burst inside it (see train/actions/synth.py). Writes "
                    "OUT/features/*.npy, OUT/train.json, OUT/test.json and OUT/synth_config.json.")
    p.add_argument("--out", type=output_folder, required=True, help="output folder; must be absent or empty")
    p.add_argument("--train-videos", type=int, default=defaults.train_videos, help="default %(default)s")
    p.add_argument("--test-videos", type=int, default=defaults.test_videos, help="default %(default)s")
    p.add_argument("--classes", type=int, default=defaults.classes, help="default %(default)s")
    p.add_argument("--seed", type=int, default=defaults.seed, help="default %(default)s")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if os.path.exists(args.out) and os.listdir(args.out):
        raise ValueError(f"--out {args.out} is not empty; give a new or empty folder")
    cfg = SynthActionsConfig(classes=args.classes, train_videos=args.train_videos, test_videos=args.test_videos,
                             seed=args.seed)
    paths = generate(args.out, cfg, progress=not args.no_progress)
    print(f"wrote {cfg.train_videos} train + {cfg.test_videos} test videos of {cfg.classes} classes: "
          f"{paths['train']}, {paths['test']}")
    return 0
