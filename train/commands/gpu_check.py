"""`dali-has gpu-check --out DIR`: GPU tests, GPU benches and short GPU trainings in one call, one JSON summary."""
from __future__ import annotations

import argparse
import sys

from train.commands.arguments import output_folder


def register(subparsers) -> None:
    from train.bench.gpu_check import DEFAULT_BUDGET_S, SUMMARY

    p = subparsers.add_parser(
        "gpu-check", help="verify every GPU path on this machine and write one JSON summary",
        description="On a machine with a CUDA GPU, in this order, within --budget seconds: the `gpu`-marked "
                    "tests (those of CUDA kernels that never ran on a GPU first, in a process of their own), the "
                    "pipeline stage benchmark (python -m train.bench.pipeline_stages --device gpu), `dali-has "
                    "bench --device gpu` for AlexNet-GAP, a short GPU training of each architecture, "
                    "the memory one GPU pipeline holds per thread count, and ResNet-50's bench with "
                    f"torch.compile. Writes OUT/{SUMMARY} (card, driver, versions, every figure; rewritten after "
                    "every step) and one log per step. Exits 0 when every step passed, 1 when one failed or was "
                    "left out for time, 2 without a GPU.")
    p.add_argument("--out", type=output_folder, required=True, metavar="DIR",
                   help="folder for the summary and the logs")
    p.add_argument("--budget", type=positive_seconds, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                   help="time for all steps together (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from train.bench.gpu_check import SUMMARY, NoGPUError, run_check

    try:
        summary = run_check(args.out, args.budget)
    except NoGPUError as e:
        print(f"dali-has gpu-check: error: {e}", file=sys.stderr)
        return 2
    counts = "; ".join(f"{what}: {tests.get('passed', '?')} passed, {tests.get('failed', '?')} failed, "
                       f"{tests.get('skipped', '?')} skipped"
                       for what, tests in (("kernel tests", summary["kernel_tests"] or {}),
                                           ("gpu tests", summary["gpu_tests"] or {})))
    print(f"gpu-check: {'passed' if summary['passed'] else 'FAILED'} in {summary['wall_s']:.0f} s; {counts}; "
          f"summary: {args.out}/{SUMMARY}")
    return 0 if summary["passed"] else 1


def positive_seconds(value: str) -> float:
    """An argparse `type`: a finite number of seconds > 0 (nan and -1 were taken, and every step skipped)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: give a number of seconds > 0")
    return seconds
