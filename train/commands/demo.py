"""`dali-has demo`: baseline vs Hide-and-Seek AlexNet-GAP on the embedded synthetic WSOL set."""
from __future__ import annotations

import inspect

from train.commands.arguments import add_device, add_no_progress, output_folder, spaced
from train.wsol.demo import RESULTS, run_demo
from train.wsol.visualize import CAM_PICTURE


def register(sub) -> None:
    defaults = {name: parameter.default for name, parameter in inspect.signature(run_demo).parameters.items()}
    p = sub.add_parser("demo", help="generate the synthetic WSOL set, train baseline and HaS, compare localization",
                       description="Generates the synthetic set, trains AlexNet-GAP (cut down for 64-pixel images) "
                                   "with and without Hide-and-Seek under each seed, evaluates every run on the "
                                   f"held-out split and writes OUT/{RESULTS} and OUT/{CAM_PICTURE}.")
    p.add_argument("--out", type=output_folder, default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help=f"training seeds, one baseline and one HaS run each (default {spaced(defaults['seeds'])})")
    p.add_argument("--epochs", type=int, help=f"training epochs per run (default {defaults['epochs']})")
    p.add_argument("--n-train", type=int, help=f"training images (default {defaults['n_train']})")
    p.add_argument("--n-test", type=int, help=f"held-out images (default {defaults['n_test']})")
    p.add_argument("--data-seed", type=int, help=f"seed of the generated set (default {defaults['data_seed']}, the "
                                                 "one reported; the recipe was chosen on 1)")
    p.add_argument("--jobs", type=int, help="trainings at a time, each in its own process with an equal share "
                                            f"of the cores (default {defaults['jobs']})")
    add_device(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args) -> int:
    run_demo(args.out, progress=not args.no_progress,
             **{k: v for k, v in vars(args).items() if v is not None and k not in ("func", "command", "out",
                                                                                   "no_progress")})
    return 0
