"""`dali-has show`: a PNG grid of training samples as the network sees them, with Hide-and-Seek applied."""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("show", help="write a PNG grid of Hide-and-Seek-augmented training samples",
                       description="Runs the DALI training pipeline (crop, flip, normalize, HaS) on DATA and "
                                   "writes the first batch, un-normalized, as a PNG grid.")
    p.add_argument("data", help="folder DIR/<class>/*.jpg or a file list")
    p.add_argument("--out", default="has_samples.png")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--columns", type=int, default=8)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--scale", type=int, default=1, help="enlarge each tile this many times")
    p.add_argument("--patch-sizes", type=int, nargs="+", default=[0, 16, 32, 44, 56])
    p.add_argument("--p-hide", type=float, default=0.5)
    p.add_argument("--random-area", type=float, nargs=2, default=[0.08, 1.0], metavar=("MIN", "MAX"),
                   help="random-resized-crop area range (default 0.08 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                   help="dataset mean RGB, 0..255 (from `dali-has mean`); hidden pixels show it")
    p.set_defaults(func=run)


def run(args) -> int:
    from dali_has import HaSConfig
    from pipelines import IMAGENET_MEAN, IMAGENET_STD, make_loader
    from train.wsol.visualize import grid, save_png, to_uint8_images

    mean = tuple(args.mean) if args.mean else IMAGENET_MEAN
    try:
        has = HaSConfig(args.patch_sizes, args.p_hide, 0.0)  # fill 0 = the normalization mean
        loader = make_loader(args.data, train=True, batch_size=args.count, crop=args.crop, has=has,
                             seed=args.seed, mean=mean, std=IMAGENET_STD, random_area=tuple(args.random_area))
    except (ValueError, FileNotFoundError) as e:
        print(f"dali-has show: error: {e}", file=sys.stderr)
        return 2
    images, _ = next(iter(loader))
    tiles = to_uint8_images(images, mean, IMAGENET_STD)
    print(save_png(grid(list(tiles), columns=args.columns, scale=args.scale), args.out))
    return 0
