"""`dali-has gpu-check --out DIR`: GPU tests, GPU benches and short GPU trainings in one call, one JSON summary."""
from __future__ import annotations

import argparse
import sys

from train.commands.arguments import output_folder


def register(subparsers) -> None:
    from train.bench.gpu_check import DEFAULT_BUDGET_S, SUMMARY

    p = subparsers.add_parser(
        "gpu-check", help="verify every GPU path on this machine and write one JSON summary",
        description="On a machine with a CUDA GPU: the `gpu`-marked tests, the memory one GPU pipeline holds per "
                    "thread count, `dali-has bench --device gpu` for AlexNet-GAP and ResNet-50, and a short GPU "
                    f"training of each, within --budget seconds. Writes OUT/{SUMMARY} (card, driver, versions, "
                    "every figure) and one log per step. Exits 0 when every step passed, 1 when one failed, 2 "
                    "without a GPU.")
    p.add_argument("--out", type=output_folder, required=True, metavar="DIR",
                   help="folder for the summary and the logs")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                   help="time for all steps together (default %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from train.bench.gpu_check import SUMMARY, NoGPUError, run_check

    try:
        summary = run_check(args.out, args.budget)
    except NoGPUError as e:
        print(f"dali-has gpu-check: error: {e}", file=sys.stderr)
        return 2
    tests = summary["gpu_tests"] or {}
    print(f"gpu-check: {'passed' if summary['passed'] else 'FAILED'} in {summary['wall_s']:.0f} s; gpu tests: "
          f"{tests.get('passed', '?')} passed, {tests.get('failed', '?')} failed, {tests.get('skipped', '?')} "
          f"skipped; summary: {args.out}/{SUMMARY}")
    return 0 if summary["passed"] else 1
