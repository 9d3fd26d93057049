"""`dali-has action-demo`: baseline vs temporal Hide-and-Seek on a feature set, mAP at θ = 0.1..0.5 over seeds."""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from dali_has import TemporalHaSConfig
from pipelines.feature_pipeline import FeatureIndex, mean_feature
from train.actions.training import ActionTrainConfig, evaluate_localization, train_action_model

VARIANTS = ("baseline", "temporal HaS")


def register(subparsers) -> None:
    defaults = ActionTrainConfig()
    p = subparsers.add_parser(
        "action-demo", help="train baseline vs temporal-HaS action classifiers and compare localization mAP",
        description="Train the paper's §4.2.3 classifier (two 1x1 temporal convs with 500 kernels, global max "
                    "pooling, softmax) on DATA/train.json with and without temporal Hide-and-Seek (fill = the "
                    "training set's mean feature), then localize actions on DATA/test.json from the 1-D CAM "
                    "(segments above 50%% of its max) and print THUMOS-style mAP at temporal IoU 0.1..0.5, "
                    "mean ± std over seeds. `dali-has synth-actions` makes a DATA folder.")
    p.add_argument("--data", required=True, help="folder with train.json and test.json feature indexes")
    p.add_argument("--seeds", type=int, default=3, help="training runs per variant, seeds 0..N-1 (default 3)")
    p.add_argument("--frames", type=int, default=defaults.frames, help="F_total sampled features (default %(default)s)")
    p.add_argument("--segment", type=int, default=2, help="F_segment of temporal HaS (default %(default)s)")
    p.add_argument("--p-hide", type=float, default=0.5, help="default %(default)s")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="default %(default)s")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="default %(default)s")
    p.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (default %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the model is small, and more threads than free cores "
                        "slow training down several times)")
    p.add_argument("--json", help="also write the per-seed results to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.seeds < 1 or args.threads < 1:
            raise ValueError(f"--seeds {args.seeds} and --threads {args.threads} must be >= 1")
        train_index = FeatureIndex.load(os.path.join(args.data, "train.json"))
        test_index = FeatureIndex.load(os.path.join(args.data, "test.json"))
        has = TemporalHaSConfig(args.segment, args.p_hide, tuple(mean_feature(train_index)))
        configs = {name: [ActionTrainConfig(frames=args.frames, has=h, epochs=args.epochs, batch_size=args.batch_size,
                                            lr=args.lr, seed=seed) for seed in range(args.seeds)]
                   for name, h in zip(VARIANTS, (None, has))}
    except (ValueError, OSError) as e:
        print(f"dali-has action-demo: error: {e}", file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        results = {name: [run_once(train_index, test_index, configs[name][seed], args) for seed in range(args.seeds)]
                   for name in VARIANTS}
    finally:
        torch.set_num_threads(threads)
    print(format_table(results, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "func"},
                       "results": {name: [{"top1": r["top1"], "mAP": {str(t): v for t, v in r["mAP"].items()}}
                                          for r in runs] for name, runs in results.items()}}, f, indent=1)
    return 0


def run_once(train_index: FeatureIndex, test_index: FeatureIndex, cfg: ActionTrainConfig,
             args: argparse.Namespace) -> dict:
    model = train_action_model(train_index, cfg, progress=not args.no_progress)
    result = evaluate_localization(model, test_index, frames=cfg.frames)
    name = VARIANTS[cfg.has is not None]
    print(f"seed {cfg.seed} {name:>12}: top-1 {100 * result['top1']:.1f} %, mAP "
          + " ".join(f"{100 * v:.1f}" for v in result["mAP"].values()), flush=True)
    return result


def format_table(results: dict, args: argparse.Namespace) -> str:
    """Mean ± std over seeds, in percent: one row per variant, one column per IoU threshold, then top-1."""
    thresholds = list(next(iter(results.values()))[0]["mAP"])
    head = f"{'mAP (%) at tIoU':<16}" + "".join(f"{t:>13}" for t in thresholds) + f"{'top-1 (%)':>13}"
    lines = [f"{len(results[VARIANTS[0]])} seeds, F_total={args.frames}, temporal HaS segment={args.segment}, "
             f"p_hide={args.p_hide}, {args.epochs} epochs; on {args.data}", head]
    for name, runs in results.items():
        cells = [np.array([r["mAP"][t] for r in runs]) for t in thresholds] + [np.array([r["top1"] for r in runs])]
        lines.append(f"{name:<16}" + "".join(f"{100 * c.mean():>7.1f} ±{100 * c.std():>4.1f}" for c in cells))
    return "\n".join(lines)
