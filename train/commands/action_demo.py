"""`dali-has action-demo`: baseline vs temporal Hide-and-Seek on a feature set, mAP at θ = 0.1..0.5 over seeds."""
from __future__ import annotations

import argparse
import json

from train.actions.demo import ActionDemoSettings
from train.actions.training import ActionTrainConfig
from train.commands.arguments import add_data, add_no_progress, output_file, spaced


def register(subparsers) -> None:
    defaults = ActionTrainConfig()
    p = subparsers.add_parser(
        "action-demo", help="train baseline vs temporal-HaS action classifiers and compare localization mAP",
        description="Train the paper's §4.2.3 classifier (two 1x1 temporal convs with 500 kernels, global max "
                    "pooling, softmax) on DATA/train.json with and without temporal Hide-and-Seek (fill = the "
                    "training set's mean feature), then localize actions on DATA/test.json from the 1-D CAM "
                    "(segments above 50% of its max) and print mAP (ActivityNet's AP) at temporal IoU 0.1..0.5, "
                    "mean ± std over seeds. `dali-has synth-actions` makes a DATA folder.")
    add_data(p, "folder with train.json and test.json feature indexes")
    p.add_argument("--seeds", type=int, nargs="+", default=list(ActionDemoSettings.seeds), metavar="SEED",
                   help="training seeds, one baseline and one temporal-HaS run each "
                        f"(default {spaced(ActionDemoSettings.seeds)})")
    p.add_argument("--frames", type=int, default=defaults.frames, help="F_total sampled features (default %(default)s)")
    p.add_argument("--has-segment", type=int, default=ActionDemoSettings.segment,
                   help="F_segment of temporal HaS (default %(default)s)")
    p.add_argument("--has-p-hide", type=float, default=ActionDemoSettings.p_hide, help="default %(default)s")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="default %(default)s")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="default %(default)s")
    p.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (default %(default)s)")
    p.add_argument("--torch-threads", type=int, default=ActionDemoSettings.torch_threads,
                   help="torch CPU threads (default %(default)s: the model is small, and more threads than free "
                        "cores slow training down several times)")
    p.add_argument("--json", type=output_file(".json"), help="also write the per-seed results to this JSON file")
    add_no_progress(p)
    p.set_defaults(func=run, reads=("data",))  # its indexes and features: no output may land among them


def run(args: argparse.Namespace) -> int:
    from train.actions.demo import map_table, results_json, run_action_demo

    settings = ActionDemoSettings(
        data=args.data, seeds=args.seeds, segment=args.has_segment, p_hide=args.has_p_hide,
        torch_threads=args.torch_threads,
        train=ActionTrainConfig(frames=args.frames, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr))
    results = run_action_demo(settings, progress=not args.no_progress)
    print(map_table(results, settings))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results_json(results, settings), f, indent=1)
    return 0
