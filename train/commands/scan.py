"""`dali-has scan --data DATA`: name every file the pipeline cannot use and why; list the usable ones."""
from __future__ import annotations

import argparse
import json

from pipelines.settings import PASS_BATCH_SIZE
from train.commands.arguments import add_data, add_no_progress, add_num_threads, output_file


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "scan", help="check every image of a dataset; write a file list of the usable ones",
        description="Check every file of DATA as the loader does (regular file, size, signature, header), "
                    "decode the accepted ones with DALI's CPU decoder and report the unusable ones (empty, "
                    "truncated, not an image, unsupported format, absurd header size, links to devices or FIFOs) "
                    "as errors, odd but usable ones (PNG named .jpg, CMYK, names a file list cannot hold) as "
                    "warnings, and grayscale, progressive and EXIF-rotated JPEGs as notes. Exits 1 if any file is "
                    "unusable, 2 if DATA cannot be listed.")
    add_data(p)
    p.add_argument("--write-list", metavar="FILE", type=output_file(),
                   help="write a DALI file list ('path label' lines) of the usable files, for the loader")
    p.add_argument("--json", metavar="FILE", type=output_file(".json"), help="also write the full report as JSON")
    p.add_argument("--batch-size", type=int, default=PASS_BATCH_SIZE,
                   help="files decoded per DALI batch (default %(default)s)")
    add_num_threads(p)
    p.add_argument("--verbose", action="store_true", help="list every note, not only their count")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.files import list_entry, unlistable, write_file_list
    from pipelines.scan import NOTE, scan_dataset

    report = scan_dataset(args.data, batch_size=args.batch_size, num_threads=args.num_threads,
                          progress=not args.no_progress)
    for problem in report.problems:
        if problem.severity != NOTE or args.verbose:
            print(f"{problem.severity.upper():<7} {problem.path}: {problem.message}. {problem.advice}.")
    not_listed = []
    if args.write_list:
        listable = []
        for path, label in report.usable_samples():
            reason = unlistable(list_entry(args.write_list, path))
            if reason:
                not_listed.append({"path": str(path), "reason": reason})
                print(f"{'WARNING':<7} {str(path)!r} is usable but not listed: {reason}. Rename it to list it.")
            else:
                listable.append((path, label))
        count = write_file_list(args.write_list, listable)
        left = f"; {len(not_listed)} usable file(s) left out, their names cannot be listed" if not_listed else ""
        print(f"wrote {count} usable files to {args.write_list}{left}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({**report.to_dict(), "not_listed": not_listed}, out, indent=1)
    notes = sum(p.severity == NOTE for p in report.problems)
    hint = f" (--verbose lists the {notes} notes)" if notes and not args.verbose else ""
    print(f"scan: {report.summary()}{hint}")
    return 1 if report.unusable else 0
