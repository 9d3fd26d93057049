"""`dali-has prepare --data SRC --out DST`: a one-time copy of a dataset with every image small enough to decode
fast, as image files or WebDataset shards (`pipelines.prepare` explains the choices)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from train.commands.arguments import add_data, add_no_progress, add_num_threads, output_folder


def register(subparsers) -> None:
    from pipelines.prepare import ENCODINGS, PrepareSettings

    defaults = PrepareSettings()
    p = subparsers.add_parser(
        "prepare", help="re-encode a dataset once with every image at most --max-side pixels (faster epochs)",
        description="Copy DATA (folder or file list) to OUT with every image re-encoded as a JPEG (or stored as "
                    "decoded pixels, --encoding npy) whose shorter (or longer) side is at most --max-side, upright "
                    "(EXIF orientation applied), never enlarged; labels and relative paths kept (extension .jpg "
                    "or .npy), OUT/file_list.txt written. Files `dali-has scan` finds unusable are left out and "
                    "listed. Running it again resumes an interrupted run and converts what was added or changed "
                    "in DATA since (shards: refused if DATA changed). OUT/prepare.json records the settings, "
                    "counts, bytes before and after, and every bad file. Train on OUT/file_list.txt like on the "
                    "original (or on OUT itself when DATA was a folder of class folders).")
    add_data(p)
    p.add_argument("--out", type=output_folder, required=True,
                   help="output folder (new or empty, or an earlier run's to resume or update)")
    p.add_argument("--max-side", type=int, default=defaults.max_side,
                   help="largest size of the bounded side in pixels, e.g. 256..512 (default %(default)s)")
    p.add_argument("--side", choices=("shorter", "longer"), default=defaults.side,
                   help="which side --max-side bounds (default %(default)s: what a 224 crop and the 256-px "
                        "evaluation resize need; longer = FFCV's max_resolution, smaller files)")
    p.add_argument("--quality", type=int, default=defaults.quality, help="JPEG quality (default %(default)s)")
    p.add_argument("--encoding", choices=tuple(ENCODINGS), default=defaults.encoding,
                   help="how images are stored (default %(default)s); npy: decoded pixels, so training decodes "
                        "nothing (FFCV's raw mode), at about eight times the disk of q90 JPEGs; not with "
                        "--webdataset")
    p.add_argument("--webdataset", action="store_true",
                   help="write WebDataset tar shards with DALI indexes instead of image files")
    p.add_argument("--shard-samples", type=int, default=defaults.shard_samples,
                   help="samples per shard with --webdataset (default %(default)s)")
    p.add_argument("--delete-stale", action="store_true",
                   help="delete the files prepare wrote in OUT whose source is gone or now unusable (listed as "
                        "STALE otherwise) and empty folders that are no classes, so that OUT read as a folder is "
                        "the data set as it is now")
    add_num_threads(p)
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.files import PREPARE_MANIFEST
    from pipelines.prepare import PrepareSettings, prepare

    settings = PrepareSettings(max_side=args.max_side, side=args.side, quality=args.quality,
                               webdataset=args.webdataset, shard_samples=args.shard_samples, encoding=args.encoding)
    manifest = prepare(args.data, args.out, settings, num_threads=args.num_threads, progress=not args.no_progress,
                       delete_stale=args.delete_stale)
    for problem in manifest["problems"]:
        print(f"LEFT OUT {problem['path']}: {problem['message']}. {problem['advice']}.")
    size = manifest["bytes"]
    ratio = f" ({100 * size['prepared'] / size['source']:.0f} %)" if size["source"] else ""  # none prepared: no %
    print(f"prepare: {manifest['samples']} samples, {manifest['prepared']} prepared ({manifest['converted']} "
          f"written now, {manifest['reused']} already there), {manifest['unusable']} left out; "
          f"{size['source'] / 1e6:.1f} MB -> {size['prepared'] / 1e6:.1f} MB{ratio} in {manifest['seconds']:.1f} s")
    if stale := manifest["stale"]:
        print(f"STALE: {len(stale)} prepared file(s) in {args.out} no longer match a usable source (deleted, renamed "
              f"or now unusable), e.g. {stale[0]}; the file list leaves them out. Delete them (--delete-stale) "
              f"before reading {args.out} as a folder; all are listed under \"stale\" in "
              f"{Path(args.out, PREPARE_MANIFEST)}.")
    if folders := manifest["stale_folders"]:
        print(f"STALE FOLDERS: {len(folders)} folder(s) of {args.out} are no class of {args.data} now (removed or "
              f"renamed), e.g. {folders[0]}; read as a folder, {args.out} would count them as classes, so it is "
              "refused until they are gone: run again with --delete-stale (it keeps links and folders holding files "
              "prepare did not write: move those yourself), or read the file list.")
    if deleted := manifest["deleted"]:
        print(f"DELETED: {len(deleted)} prepared file(s) whose source is gone or now unusable, e.g. {deleted[0]} "
              f"(all listed under \"deleted\" in {Path(args.out, PREPARE_MANIFEST)}).")
    if not manifest["prepared"]:
        print(f"NOTHING PREPARED: none of the {manifest['samples']} files of {args.data} could be used (each is "
              "listed above with its reason); there is nothing to train on", file=sys.stderr)
        return 2
    where = Path(args.out, manifest["outputs"].get("file_list", ""))  # the shards' folder, or the file list
    print(f"train on: {where}   (settings and every left-out file: {Path(args.out, PREPARE_MANIFEST)})")
    return 0
