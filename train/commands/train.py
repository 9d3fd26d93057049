"""`dali-has train`: train ResNet-50 or AlexNet-GAP with the DALI loader; `torchrun` for several processes."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipelines.settings import CROP_RATIO, DTYPE_NAMES, FLIP_PROBABILITY, RANDOM_AREA, default_device
from train.commands.arguments import (
    LOADER_DATA_HELP,
    add_data,
    add_device,
    add_has,
    add_model_opts,
    add_no_progress,
    add_num_threads,
    input_path,
    parse_model_opts,
    spaced,
)
from train.config import LR_SCHEDULES, OPTIMIZERS, VAL_METRICS, FeatureHaS, TrainConfig, Validation
from train.models import ARCHS
from train.wsol.box_formats import BOX_SPLITS


def register(sub) -> None:
    p = sub.add_parser("train", help="train a classifier with the DALI loader (Hide-and-Seek on by default)",
                       description="Train with the DALI loader. Under torchrun each rank reads its own shard "
                                   "(seed = base + rank). Defaults follow the paper's schedule per architecture.")
    add_data(p, "training " + LOADER_DATA_HELP, required=False)
    p.add_argument("--out", help="run folder: config.json, metrics.jsonl, checkpoint.pt")
    p.add_argument("--resume", metavar="RUN_DIR", type=input_path, help="continue RUN_DIR from its last checkpoint "
                                                        "(its config; --epochs, --data, --device and the "
                                                        "options of how it runs may change)")
    p.add_argument("--arch", choices=tuple(ARCHS))
    p.add_argument("--has", action=argparse.BooleanOptionalAction, default=None,
                   help="Hide-and-Seek on the training images (default on)")
    add_has(p)
    p.add_argument("--has-fill", type=float, nargs="+", metavar="V",
                   help="fill after normalization (0 = the normalization mean)")
    for name, kind in (("epochs", int), ("batch-size", int), ("lr", float), ("momentum", float),
                       ("weight-decay", float), ("lr-gamma", float), ("warmup-epochs", int), ("crop", int),
                       ("seed", int), ("max-steps-per-epoch", int)):
        p.add_argument(f"--{name}", type=kind)
    add_num_threads(p)
    p.add_argument("--skip-bad-files", action=argparse.BooleanOptionalAction, default=None,
                   help="leave out files DALI's decoder must not see (not an image, a header it cannot parse, not a "
                        "regular file), with a warning saying how many and where they are listed; by default "
                        "they stop the run with an error naming them (--no-skip-bad-files: so again, at --resume)")
    p.add_argument("--random-area", type=float, nargs=2, metavar=("MIN", "MAX"),
                   help=f"random-resized-crop area range (default {spaced(RANDOM_AREA)})")
    p.add_argument("--flip-probability", type=float, help=f"horizontal flips (default {FLIP_PROBABILITY})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="default sgd (momentum); adamw uses --momentum as beta1")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help="step (default): x --lr-gamma at --lr-milestones after --warmup-epochs; onecycle: cosine "
                        "rise to --lr over the first 30%% of steps, then cosine decay")
    p.add_argument("--lr-milestones", type=int, nargs="+", metavar="EPOCH")
    add_device(p)
    p.add_argument("--dtype", choices=tuple(DTYPE_NAMES))
    p.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="normalization mean, 0..255")
    p.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="normalization std, 0..255")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--feature-has-after", metavar="LAYER",
                   help="feature-map Hide-and-Seek after this layer (paper Table 5), e.g. body.1 = conv1 of "
                        "AlexNet-GAP (body.2 with batch_norm=true)")
    p.add_argument("--feature-has-patch-sizes", type=int, nargs="+", metavar="S",
                   help=f"cells on the map (default {spaced(FeatureHaS.patch_sizes)})")
    p.add_argument("--feature-has-p-hide", type=float, metavar="P",
                   help=f"probability that a cell of the map is hidden (default {FeatureHaS.p_hide})")
    p.add_argument("--val-data", metavar="DATA", help="held-out folder or file list evaluated while training")
    p.add_argument("--val-boxes", metavar="BOXES",
                   help="true boxes of --val-data (ILSVRC XML, CUB folder, synthetic boxes.json): adds GT-known Loc, "
                        "Top-1 Loc and MaxBoxAccV2")
    p.add_argument("--val-every", type=int, metavar="N", help="validate every N epochs and after the last "
                                                                f"(default {Validation.every})")
    p.add_argument("--val-metric", choices=VAL_METRICS,
                   help="the metric that picks RUN/best.pt (default gt_known_loc with --val-boxes, else top1)")
    p.add_argument("--val-resize", type=int, metavar="PIXELS", help="shorter side before the centre crop "
                                                                     f"(default crop / {CROP_RATIO})")
    p.add_argument("--val-split", choices=BOX_SPLITS,
                   help=f"CUB / synthetic split of --val-data (default {Validation.split})")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (worth it on a GPU; `dali-has bench --compile` measures it)")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="also log every epoch to RUN/tensorboard (pip install 'dali-has[tensorboard]')")
    add_model_opts(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def config_from_args(args) -> tuple[TrainConfig, bool]:
    """The run's config and whether it resumes; a bad combination of options is a ValueError."""
    # torch is imported only once a command runs
    from train.checkpoint import (
        BEST,
        CHECKPOINT,
        CONFIG,
        METRICS,
        RESUME_MAY_CHANGE,
        RUN_LOCK,
        load_run_config,
        temporaries,
    )

    given = {k: v for k, v in vars(args).items()
             if v is not None and k not in ("func", "command", "resume", "model_opt", "no_progress")}
    if args.model_opt:
        given["model"] = parse_model_opts(args.model_opt)
    if args.resume:
        # Where and how the run goes on may change, not what it learns; the run is the folder given.
        may_change = RESUME_MAY_CHANGE - {"out"}
        if changed := sorted(set(given) - may_change):
            flag = {"model": "model-opt"}
            raise ValueError(f"--resume continues a run with its saved config; of the options only "
                             f"{sorted('--' + k.replace('_', '-') for k in may_change)} may be given, not "
                             f"{['--' + flag.get(c, c).replace('_', '-') for c in changed]}")
        cfg = load_run_config(args.resume)  # the folder given is the run, whatever its config.json says
        return TrainConfig.from_dict({**cfg.to_dict(), **given}), True
    if not args.data or not args.out:
        raise ValueError("--data and --out are required (or --resume RUN_DIR)")
    for option, data in (("--data", args.data), ("--val-data", args.val_data)):
        if data and os.path.isdir(data) and Path(args.out).resolve().is_relative_to(Path(data).resolve()):
            # It would become a class folder of the data set: later runs train on it, this one cannot resume.
            raise ValueError(f"--out {args.out} is within the {option} folder {data}; give a folder outside it")
    if os.path.exists(os.path.join(args.out, CHECKPOINT)):
        raise ValueError(f"--out {args.out} already holds a trained run; continue it with --resume {args.out}, "
                         "or give another --out")
    if os.path.isdir(args.out):  # a new run's files would overwrite or join what is there
        # A run stopped before its first checkpoint leaves its config, lock (and TensorBoard folder): it may start
        # over (and a file's temporary copy, when the process was killed while writing it).
        # best.pt is written before checkpoint.pt: a stop in between leaves it from the first epoch.
        own = {CONFIG, RUN_LOCK, "tensorboard", BEST,
               *(left.name for name in (CHECKPOINT, CONFIG, BEST) for left in temporaries(Path(name)))}
        if os.path.isfile(metrics := os.path.join(args.out, METRICS)) and os.path.getsize(metrics) == 0:
            own.add(METRICS)  # made empty at the start (to refuse a link there early), no epoch written
        others = sorted(set(os.listdir(args.out)) - own)
        if not others and os.path.exists(os.path.join(args.out, CONFIG)):
            try:
                load_run_config(args.out)
            except ValueError:
                others = [CONFIG]  # not a run's
        if others:
            raise ValueError(f"--out {args.out} is a folder holding other files ({', '.join(others[:3])}"
                             f"{', ...' if len(others) > 3 else ''}); give a new or empty folder for the run")
    given["augment"] = _augment(given)
    given.setdefault("device", default_device())
    feature = {key: given.pop(f"feature_has_{key}") for key in ("after", "patch_sizes", "p_hide")
               if f"feature_has_{key}" in given}
    if feature:
        if "after" not in feature:
            raise ValueError("--feature-has-patch-sizes / --feature-has-p-hide need --feature-has-after LAYER")
        given["feature_has"] = feature
    val = {key: given.pop(f"val_{key}") for key in ("data", "boxes", "every", "metric", "resize", "split")
           if f"val_{key}" in given}
    if val:
        if "data" not in val:
            raise ValueError(f"{['--val-' + key for key in val]} need --val-data DATA")
        given["val"] = val
    return TrainConfig.from_dict(given), False


def _augment(given: dict) -> dict:
    """The `augment` settings from the Hide-and-Seek, crop and flip options (removed from `given`)."""
    has_on = given.pop("has", True)
    has = {key: given.pop(f"has_{key}") for key in ("patch_sizes", "p_hide", "fill") if f"has_{key}" in given}
    if has and not has_on:
        flags = ["--has-" + key.replace("_", "-") for key in has]
        raise ValueError(f"--no-has turns Hide-and-Seek off; do not also give {flags}")
    augment = {key: given.pop(key) for key in ("random_area", "flip_probability") if key in given}
    augment["has"] = has if has_on else None
    return augment


def run(args) -> int:
    from train.trainer import fit  # heavy imports only when training

    cfg, resume = config_from_args(args)
    last = fit(cfg, resume=resume, progress=not args.no_progress)
    if os.environ.get("RANK", "0") != "0":  # one summary line per torchrun job, not per rank
        return 0
    if last:
        print(f"epoch {last['epoch']}: loss {last['train_loss']:.4f}, top-1 {last['train_top1']:.2f} %, "
              f"{last['img_s']:.0f} img/s -> {cfg.out}")
    else:  # resumed at its last epoch (a job requeued after it finished ends here too)
        print(f"{cfg.out} has trained its {cfg.epochs} epochs; nothing to do (give --epochs N > {cfg.epochs} to "
              "train on)")
    return 0
