"""`dali-has` command line: one subcommand per module in `train.commands`.

Importing this module imports nothing heavy: the commands (and torch and DALI with them) are imported inside
`main`, where a Ctrl-C in the seconds those imports take is one line like any other (it was a traceback)."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# Each module defines `register(subparsers)`, adding one subparser whose `func(args) -> int` runs it.
COMMANDS = (
    "demo",
    "train",
    "eval",
    "show",
    "synth",
    "scan",
    "prepare",
    "mean",
    "bench",
    "synth_actions",
    "action_demo",
    "gpu_check",
    "build_plugin",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dali-has", description="Hide-and-Seek augmentation in NVIDIA DALI pipelines."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"train.commands.{name}").register(sub)
    for command in sub.choices.values():
        command.allow_abbrev = False  # a misspelt option must be an error, not a silent prefix match
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a user error (bad option value, bad or missing file) is one line on stderr and exit 2."""
    try:
        from train.commands.arguments import output_among_inputs

        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
    except KeyboardInterrupt:  # while importing torch and DALI: nothing has started
        print("dali-has: interrupted", file=sys.stderr)
        return 130
    command = _subparsers(parser).choices[args.command]
    if unknown:  # the command's usage, not the top-level one's (parse_args leaves them to the top level)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    problem = output_among_inputs(command, args)
    if problem:  # exit 2 before any work: one line, as for other bad values
        return _user_error(args.command, ValueError(problem))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: say what happens next instead of a traceback
        hint = _AFTER_INTERRUPT.get(args.command, "")
        run = getattr(args, "resume", None) or getattr(args, "out", None)
        if args.command == "train" and run:
            from train.checkpoint import CHECKPOINT  # imports torch, which a train that got here has imported

            if not Path(run, CHECKPOINT).is_file():
                hint = "no epoch had finished, so there is nothing to resume: run the same command again"
        if args.command == "bench" and args.json:
            hint = f'the figures measured so far are in {args.json}, marked "complete": false'
        print(f"dali-has {args.command}: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:  # OSError: missing, unreadable or already existing files
        return _user_error(args.command, error)
    except RuntimeError as error:
        from pipelines.errors import UnreadableImageError  # the pipelines are imported only when a command needs them

        if isinstance(error, UnreadableImageError):
            return _user_error(args.command, error)
        raise


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


# What an interrupted command kept and how to go on (commands not named write nothing that needs continuing).
_AFTER_INTERRUPT = {
    "train": "the run keeps its last finished epoch (checkpoint.pt); continue with --resume RUN_DIR",
    "prepare": "the images written so far are kept; run the same command again to finish",
}


# What to do about an operating-system error that carries no message of ours (only errno and file name).
_OS_HINTS = {FileExistsError: "it already exists; choose another path or remove it",
             NotADirectoryError: "a part of this path is a file, not a folder; choose another path",
             IsADirectoryError: "it is a folder; give a file path",
             PermissionError: "choose a path you may read or write, or change its permissions",
             FileNotFoundError: "check the path"}


# Longer error messages are cut in the middle: they quote names from the data (a file list's 1 MB line came back
# whole), and twice the longest path Linux takes (4,096) still fits.
MESSAGE_LIMIT = 10_000


def _user_error(command: str, error: Exception) -> int:
    message = str(error)
    if isinstance(error, OSError) and error.errno is not None and error.filename is not None:
        hint = next((h for kind, h in _OS_HINTS.items() if isinstance(error, kind)), None)
        message = f"{error.filename}: {error.strerror}" + (f"; {hint}" if hint else "")
    if len(message) > MESSAGE_LIMIT:
        half = MESSAGE_LIMIT // 2
        message = (f"{message[:half]} [... {len(message) - 2 * half:,} characters left out ...] "
                   f"{message[-half:]}")
    print(f"dali-has {command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
