"""`dali-has demo`: baseline vs Hide-and-Seek AlexNet-GAP on the embedded synthetic WSOL set."""
from __future__ import annotations

from train.commands.arguments import add_device, output_folder


def register(sub) -> None:
    p = sub.add_parser("demo", help="generate the synthetic WSOL set, train baseline and HaS, compare localization",
                       description="Generates the synthetic set, trains AlexNet-GAP (cut down for 64-pixel images) "
                                   "with and without Hide-and-Seek under each seed, evaluates every run on the "
                                   "held-out split and writes OUT/results.json and OUT/cams.png. Defaults: "
                                   "train.demo.run_demo.")
    p.add_argument("--out", type=output_folder, default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="training seeds, one baseline and one HaS run each (default 0 1 2)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--n-train", type=int)
    p.add_argument("--n-test", type=int)
    p.add_argument("--data-seed", type=int,
                   help="seed of the generated set (default 0, the one reported; the recipe was chosen on 1)")
    p.add_argument("--jobs", type=int, help="trainings at a time, each in its own process with an equal share "
                                            "of the cores (default 2)")
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from train.demo import run_demo

    run_demo(args.out, **{k: v for k, v in vars(args).items() if v is not None and k not in ("func", "command", "out")})
    return 0
