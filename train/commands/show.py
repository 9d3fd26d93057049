"""`dali-has show`: a PNG grid of training samples as the network sees them, with Hide-and-Seek applied."""
from __future__ import annotations

from dali_has.spec import PAPER_P_HIDE, PAPER_PATCH_SIZES
from pipelines.settings import CROP, RANDOM_AREA
from train.commands.arguments import add_data, add_has, output_file, spaced


def register(sub) -> None:
    p = sub.add_parser("show", help="write a PNG grid of Hide-and-Seek-augmented training samples",
                       description="Runs the DALI training pipeline (crop, flip, normalize, HaS) on DATA and "
                                   "writes the first batch, un-normalized, as a PNG grid.")
    add_data(p)
    p.add_argument("--out", default="has_samples.png", type=output_file(".png"),
                   help="the PNG to write (default %(default)s)")
    p.add_argument("--count", type=int, default=16, help="samples (default %(default)s)")
    p.add_argument("--columns", type=int, default=8, help="tiles per row (default %(default)s)")
    p.add_argument("--crop", type=int, default=CROP, help="network input side (default %(default)s)")
    p.add_argument("--scale", type=int, default=1, help="enlarge each tile this many times")
    add_has(p)
    p.set_defaults(has_patch_sizes=list(PAPER_PATCH_SIZES), has_p_hide=PAPER_P_HIDE)
    p.add_argument("--random-area", type=float, nargs=2, default=list(RANDOM_AREA), metavar=("MIN", "MAX"),
                   help=f"random-resized-crop area range (default {spaced(RANDOM_AREA)})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="dataset mean RGB, 0..255 (from `dali-has mean`); hidden pixels show it")
    p.set_defaults(func=run, reads=("data",))  # --out must not land among the images it samples


def run(args) -> int:
    from dali_has import HaSConfig, validate
    from pipelines import IMAGENET_MEAN, IMAGENET_STD, TrainAugment, make_loader
    from train.wsol.visualize import grid, save_png, to_uint8_images

    for name in ("count", "columns", "scale"):  # before any work, by their own names (count is the batch size)
        validate.positive_int(f"--{name}", getattr(args, name))
    mean = tuple(args.mean) if args.mean else IMAGENET_MEAN
    augment = TrainAugment(has=HaSConfig(args.has_patch_sizes, args.has_p_hide, 0.0),  # 0 = the normalization mean
                           random_area=tuple(args.random_area))
    with make_loader(args.data, train=True, batch_size=args.count, crop=args.crop, augment=augment, seed=args.seed,
                     mean=mean, std=IMAGENET_STD) as loader:
        images, _ = next(iter(loader))
    tiles = to_uint8_images(images, mean, IMAGENET_STD)
    print(save_png(grid(list(tiles), columns=args.columns, scale=args.scale), args.out))
    return 0
