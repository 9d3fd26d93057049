"""`dali-has bench`: is my training input-bound? Loader, baseline, model and end-to-end speeds in one run."""
from __future__ import annotations

import argparse

from pipelines.settings import DTYPE_NAMES, default_device
from train.bench.run import DEVICE_DEFAULTS, RESIZES, BenchSettings, format_report, run_bench
from train.bench.timing import write_json
from train.commands.arguments import (
    add_device,
    add_model_opts,
    add_no_progress,
    add_num_threads,
    output_file,
    parse_model_opts,
    spaced,
)
from train.models import ARCHS


def register(subparsers) -> None:
    cpu, gpu = DEVICE_DEFAULTS["cpu"], DEVICE_DEFAULTS["gpu"]
    p = subparsers.add_parser(
        "bench", help="measure loader and model speeds: is training input-bound?",
        description="In one run: the DALI training pipeline without Hide-and-Seek, with the composed and with the "
                    "fused HaS operator (for every --num-threads x --hw-decoder-load combination); a torchvision "
                    "DataLoader baseline with and without per-image HaS; the model's training step on synthetic "
                    "on-device input; end-to-end training with the DALI loader; and, with HaS, the DALI pipeline on "
                    "the original, on `dali-has prepare`d JPEGs and on prepared decoded pixels (npy) in NCHW and NHWC "
                    "against torchvision on the "
                    "originals (and FFCV on the prepared images if it is installed). Each figure is the median img/s "
                    "of --runs timed runs after warm-up. Prints a table and a verdict; --json writes every figure. "
                    f"Defaults depend on --device (CPU: batch {cpu['batch_size']}, {cpu['iters']} batches x "
                    f"{cpu['runs']} runs; GPU: batch {gpu['batch_size']}, {gpu['iters']} batches x {gpu['runs']} "
                    "runs).")
    p.add_argument("--data", metavar="DIR", help="image folder DIR/<class>/<image> (default: a generated, cached "
                                                 "set of 512 ImageNet-like JPEGs)")
    p.add_argument("--prepared", metavar="DIR",
                   help="a `dali-has prepare` copy of --data, for the prepared variants (default: the generated "
                        "set's copy, made once into the cache; none with --data)")
    p.add_argument("--prepared-npy", metavar="DIR",
                   help="a `dali-has prepare --encoding npy` copy of --data (decoded pixels), for the npy variants "
                        "(default: the generated set's, made once into the cache; none with --data)")
    p.add_argument("--resize", nargs="+", choices=RESIZES,
                   help="resize + normalize (+ HaS) implementations compared on originals and prepared images "
                        "(default: both on cpu, builtin on gpu; fused on gpu runs the plugin's CUDA kernel)")
    add_device(p, help="where DALI decodes and the model trains")
    p.add_argument("--batch-size", type=int)
    add_num_threads(p, sweep=True)
    p.add_argument("--hw-decoder-load", type=float, nargs="+", metavar="X",
                   help="GPU only: share of JPEGs for the hardware decoder, swept "
                        f"(default {spaced(gpu['hw_decoder_load'])})")
    p.add_argument("--arch", choices=tuple(ARCHS), default=BenchSettings.arch)
    add_model_opts(p)
    p.add_argument("--compile", action="store_true",
                   help="also time the model step under torch.compile (worth it on a GPU; compiling takes a while)")
    p.add_argument("--crop", type=int, default=BenchSettings.crop,
                   help="network input side in pixels (default %(default)s)")
    p.add_argument("--dtype", choices=tuple(DTYPE_NAMES),
                   help=f"loader output dtype (default: {gpu['dtype']} on gpu, {cpu['dtype']} on cpu)")
    p.add_argument("--iters", type=int, help="timed batches per run, loader figures")
    p.add_argument("--model-iters", type=int, help="timed batches per run, model step and end-to-end")
    p.add_argument("--warmup", type=int, help="untimed batches first (loaders: at least 3x their prefetch queue)")
    p.add_argument("--runs", type=int, help="timed runs per figure; the median is reported")
    p.add_argument("--json", metavar="FILE", type=output_file(".json"),
                   help="write every figure, the raw runs and the machine to FILE")
    add_no_progress(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = BenchSettings(
        data=args.data, device=args.device or default_device(),
        batch_size=args.batch_size, threads=tuple(args.num_threads or ()),
        hw_decoder_load=tuple(args.hw_decoder_load or ()), arch=args.arch,
        model=parse_model_opts(args.model_opt), crop=args.crop, dtype=args.dtype, iters=args.iters,
        model_iters=args.model_iters, warmup=args.warmup, runs=args.runs, compile=args.compile,
        prepared=args.prepared, prepared_npy=args.prepared_npy, resize=tuple(args.resize or ()))
    result = run_bench(settings, progress=not args.no_progress, json_path=args.json)
    print(format_report(result))
    print(f"\ncommand: {result['command']}")
    write_json(args.json, result)  # replaces the incomplete report written while it measured
    return 0
