"""`dali-has demo`: baseline vs Hide-and-Seek AlexNet-GAP on the embedded synthetic WSOL set."""
from __future__ import annotations

from train.commands.arguments import add_device


def register(sub) -> None:
    p = sub.add_parser("demo", help="generate the synthetic WSOL set, train baseline and HaS, compare localization",
                       description="Generates the synthetic set, trains AlexNet-GAP with and without "
                                   "Hide-and-Seek (same seed), evaluates both on the held-out split and writes "
                                   "OUT/results.json and OUT/cams.png.")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--seed", type=int, default=0, help="training seed (the dataset is fixed)")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=1000)
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from train.demo import run_demo

    run_demo(args.out, seed=args.seed, epochs=args.epochs, n_train=args.n_train, n_test=args.n_test,
             device=args.device)
    return 0
