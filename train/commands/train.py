"""`dali-has train`: train ResNet-50 or AlexNet-GAP with the DALI loader; `torchrun` for several processes."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from train.config import ARCHS, LR_SCHEDULES, OPTIMIZERS, TrainConfig


def register(sub) -> None:
    p = sub.add_parser("train", help="train a classifier with the DALI loader (Hide-and-Seek on by default)",
                       description="Train with the DALI loader. Under torchrun each rank reads its own shard "
                                   "(seed = base + rank). Defaults follow the paper's schedule per architecture.")
    p.add_argument("--data", help="training folder DIR/<class>/*.jpg or a file list")
    p.add_argument("--out", help="run folder: config.json, metrics.jsonl, checkpoint.pt")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint "
                                                        "(its config; only --epochs may change)")
    p.add_argument("--arch", choices=ARCHS)
    p.add_argument("--has", action=argparse.BooleanOptionalAction, default=None,
                   help="Hide-and-Seek on the training images (default on)")
    p.add_argument("--has-patch-sizes", type=int, nargs="+", metavar="S")
    p.add_argument("--has-p-hide", type=float)
    p.add_argument("--has-fill", type=float, nargs="+", metavar="V",
                   help="fill after normalization (0 = the normalization mean)")
    for name, kind in (("epochs", int), ("batch-size", int), ("lr", float), ("momentum", float),
                       ("weight-decay", float), ("lr-gamma", float), ("warmup-epochs", int), ("crop", int),
                       ("seed", int), ("num-threads", int), ("max-steps-per-epoch", int)):
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--random-area", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help="random-resized-crop area range (default 0.08 1)")
    p.add_argument("--flip-probability", type=float, help="horizontal flips (default 0.5)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="default sgd (momentum); adamw uses --momentum as beta1")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="step (default): x --lr-gamma at --lr-milestones after --warmup-epochs; onecycle: cosine "
                        "rise to --lr over the first 30%% of steps, then cosine decay")
    p.add_argument("--lr-milestones", type=int, nargs="+", metavar="EPOCH")
    p.add_argument("--device", choices=("cpu", "gpu"))
    p.add_argument("--dtype", choices=("float32", "float16"))
    p.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="normalization mean, 0..255")
    p.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="normalization std, 0..255")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--feature-has-after", metavar="LAYER",
                   help="feature-map Hide-and-Seek after this layer (paper Table 5), e.g. body.2 = conv1 of AlexNet-GAP")
    p.add_argument("--feature-has-patch-sizes", type=int, nargs="+", metavar="S", help="cells on the map (default 5 11)")
    p.add_argument("--feature-has-p-hide", type=float)
    p.add_argument("--model-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture option, e.g. pool=gmp or batch_norm=true (repeatable)")
    p.set_defaults(func=run)


def config_from_args(args) -> tuple[TrainConfig, bool]:
    """The run's config and whether it resumes; a bad combination of options is a ValueError."""
    given = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("func", "command", "resume", "model_opt")}
    if args.model_opt:
        given["model"] = parse_model_opts(args.model_opt)
    if args.resume:
        changed = sorted(set(given) - {"epochs"})
        if changed:
            raise ValueError(f"--resume continues a run with its saved config; only --epochs may be given, "
                             f"not {['--' + c.replace('_', '-') for c in changed]}")
        cfg = TrainConfig.load(Path(args.resume) / "config.json")
        if "epochs" in given:
            cfg = TrainConfig.from_dict({**cfg.to_dict(), "epochs": given["epochs"]})
        return cfg, True
    if not args.data or not args.out:
        raise ValueError("--data and --out are required (or --resume RUN_DIR)")
    return TrainConfig.from_dict(given), False


def parse_model_opts(items: list[str]) -> dict:
    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-opt {item!r}: expected KEY=VALUE")
        low = value.lower()
        opts[key] = True if low == "true" else False if low == "false" else _number_or_text(value)
    return opts


def _number_or_text(value: str):
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def run(args) -> int:
    from train.trainer import fit  # heavy imports only when training

    try:
        cfg, resume = config_from_args(args)
        last = fit(cfg, resume=resume)
    except (ValueError, FileNotFoundError) as e:
        print(f"dali-has train: error: {e}", file=sys.stderr)
        return 2
    if last and os.environ.get("RANK", "0") == "0":  # one summary line per torchrun job, not per rank
        print(f"epoch {last['epoch']}: loss {last['train_loss']:.4f}, top-1 {last['train_top1']:.2f} %, "
              f"{last['img_s']:.0f} img/s -> {cfg.out}")
    return 0
