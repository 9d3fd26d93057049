"""`dali-has eval`: classification and CAM localization metrics of one or two trained runs."""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.settings import CROP_RATIO, PASS_BATCH_SIZE, default_device
from train.commands.arguments import (
    add_data,
    add_device,
    add_no_progress,
    add_num_threads,
    can_write_in,
    input_path,
    output_file,
)
from train.wsol.box_formats import BOX_SPLITS, HELD_OUT_SPLIT


def register(sub) -> None:
    p = sub.add_parser("eval", help="CAM localization metrics (GT-known Loc, Top-1 Loc, MaxBoxAccV2) of runs",
                       description="Evaluate trained runs on a held-out folder with true boxes. Two runs "
                                   "(e.g. baseline and HaS) are compared side by side in the PNG.")
    add_data(p, "held-out folder DIR/<class>/*.jpg or a file list")
    p.add_argument("--boxes", required=True, type=input_path,
                   help="ILSVRC XML file/folder, CUB-200-2011 folder or synth boxes.json")
    p.add_argument("--checkpoint", required=True, nargs="+", metavar="RUN_DIR", type=input_path,
                   help="one or more run folders")
    p.add_argument("--best", action="store_true",
                   help="evaluate the run's best validated weights (best.pt) instead of the latest (checkpoint.pt)")
    p.add_argument("--split", choices=BOX_SPLITS, default=HELD_OUT_SPLIT,
                   help="CUB / synth split the data folder holds (default %(default)s)")
    p.add_argument("--ten-crop", action="store_true", help="class scores averaged over the paper's 10 crops")
    p.add_argument("--cam-threshold", type=float, help="fraction of the CAM max for the box (default per arch)")
    p.add_argument("--resize", type=int, help=f"shorter side before the centre crop (default crop / {CROP_RATIO})")
    p.add_argument("--batch-size", type=int, default=PASS_BATCH_SIZE, help="images per batch (default %(default)s)")
    add_device(p)
    add_num_threads(p)
    p.add_argument("--png", type=output_file(".png"),
                   help="write CAM overlays with boxes here (default RUN_DIR/cams.png)")
    p.add_argument("--examples", type=int, default=8, help="images in the PNG")
    p.add_argument("--json", type=output_file(".json"), help="write the metrics here")
    add_no_progress(p)
    # No output may land among the boxes or in the data (a --png in a class folder became one of its samples).
    p.set_defaults(func=run, reads=("boxes", "data"))


def run(args) -> int:
    from train.checkpoint import BEST, CHECKPOINT, CONFIG, METRICS, load_run_config
    from train.wsol.evaluate import evaluate, localization_table
    from train.wsol.visualize import CAM_PICTURE, cam_comparison, check_comparison_size

    labels = run_labels(args.checkpoint)
    run_files = {_identity(Path(run_dir) / name) for run_dir in args.checkpoint
                 for name in (CONFIG, CHECKPOINT, BEST, METRICS)} - {None}
    for option, value in (("--json", args.json), ("--png", args.png)):
        if value and _identity(Path(value)) in run_files:  # --json RUN/config.json: the run could not be resumed
            raise ValueError(f"{option} {value} would overwrite a file of the run it evaluates; write it elsewhere")
    if args.examples:  # a picture too large, or one it cannot write, would be refused only after the evaluation
        check_comparison_size(args.examples, len(labels), max(load_run_config(r).crop for r in args.checkpoint))
        default_png = Path(args.checkpoint[0]) / CAM_PICTURE
        problem = None if args.png else _default_png_problem(default_png)
        if problem:
            raise ValueError(f"cannot write {default_png}: {problem}; give --png FILE elsewhere, or --examples 0 "
                             "for no picture")
    results = {}
    for label, run_dir in zip(labels, args.checkpoint):
        results[label] = evaluate(run_dir, args.data, args.boxes, ten_crop=args.ten_crop,
                                  checkpoint=BEST if args.best else CHECKPOINT, cam_threshold=args.cam_threshold,
                                  batch_size=args.batch_size, device=args.device or default_device(),
                                  num_threads=args.num_threads, resize=args.resize, split=args.split,
                                  examples=args.examples, progress=not args.no_progress)
    metrics = {name: r.metrics for name, r in results.items()}
    print(localization_table(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    if args.examples:
        png = args.png or str(default_png)
        print(f"CAM overlays: {cam_comparison({n: r.examples for n, r in results.items()}, png)}")
    return 0


def _default_png_problem(png: Path) -> str | None:
    """Why the default picture path cannot be written (a link would write outside the run), or None."""
    if png.is_symlink():
        return "it is a link"
    if png.exists() and not png.is_file():
        return "it is a folder" if png.is_dir() else "it is not a regular file (a pipe or device)"
    if not can_write_in(png.parent):
        return "the run folder is read-only"
    return None


def _identity(path: Path):
    """(device, inode) of an existing file, so a hard link or symbolic link to it is the same file; else None."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_dev, info.st_ino


def run_labels(run_dirs: list[str]) -> list[str]:
    """A row label per run folder: its name, or as many trailing parts of its path as make the labels differ
    (`exp1/run exp2/run` were both "run", and the second run's numbers replaced the first's)."""
    parts = [Path(run_dir).resolve().parts for run_dir in run_dirs]
    if len(set(parts)) != len(parts):
        raise ValueError("--checkpoint names one run folder twice; give each run once")
    for count in range(1, max(map(len, parts)) + 1):
        labels = ["/".join(p[-count:]) for p in parts]
        if len(set(labels)) == len(labels):
            break
    return labels
