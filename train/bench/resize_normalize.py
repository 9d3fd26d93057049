"""Micro-benchmark: the fused `resize_mirror_normalize_hide` CPU operator against the chain it replaces.

On decoded random-resized-crop windows (fed by fn.external_source, so decoding is not timed) of the
ImageNet-like originals and of their 256-px copies, it times in alternation, per output layout:
  feed      fn.external_source alone: the floor every variant pays (copying the windows into DALI);
  chain     fn.resize -> fn.crop_mirror_normalize -> fn.dali_has.hide_and_seek (what the pipeline runs today);
  fused     fn.dali_has.resize_mirror_normalize_hide (the same work in one operator);
with a random flip per sample and the paper's Hide-and-Seek (HaSConfig's defaults), float32 224x224.
It also reports how far the two outputs are apart without hiding (uint8 levels and normalized units).

Timing: `train.bench.timing.measure_wall_and_cpu` (warm-up, runs in alternation, median), the wall clock (img/s,
ms/image) and the process's CPU clock (all threads; cpu ms/image: what one image costs one core, which other
processes on a shared machine inflate far less than wall time) read around the same runs.

A module to run rather than a `dali-has` command: it times one operator for whoever works on the plugin, not a
user's training setup (that is `dali-has bench`).

    python -m train.bench.resize_normalize --json resize_normalize.json
"""
from __future__ import annotations

import argparse
import itertools
from collections.abc import Iterator

import numpy as np
from nvidia.dali import fn, pipeline_def, types

from dali_has import HaSConfig, fused
from pipelines import IMAGENET_MEAN, IMAGENET_STD
from pipelines.settings import CROP
from train.bench.timing import SEED, RunRecord, add_timing_arguments, measure_wall_and_cpu, runs_and_load, write_json
from train.bench.windows import decoded_windows, image_sets

HAS = HaSConfig()  # the paper's sizes and p_hide, fill 0
VARIANTS = ("feed", "chain", "fused")
LAYOUTS = {"NCHW": "CHW", "NHWC": "HWC"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512, help="JPEGs per set (one window each, fed in a cycle)")
    add_timing_arguments(p)
    return p.parse_args(argv)


def graph(variant: str, x, layout: str):
    mirror = fn.random.coin_flip(probability=0.5)
    common = dict(mirror=mirror, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), dtype=types.FLOAT)
    if variant == "feed":
        return x
    if variant == "chain":
        y = fn.crop_mirror_normalize(fn.resize(x, size=[CROP, CROP]), output_layout=layout, **common)
        return fn.dali_has.hide_and_seek(y, **HAS.to_dict())
    return fn.dali_has.resize_mirror_normalize_hide(x, size=[CROP, CROP], output_layout=layout, **common,
                                                    **HAS.to_dict())


def batches(windows: list[np.ndarray], variant: str, layout: str, args) -> Iterator[int]:
    """A never-restarted stream of pipeline iterations over `windows` in a cycle; yields images per batch."""
    cycle = itertools.cycle(windows)

    @pipeline_def(batch_size=args.batch_size, num_threads=args.num_threads, device_id=None, seed=SEED,
                  prefetch_queue_depth=1)
    def pipe():
        x = fn.external_source(source=lambda: [next(cycle) for _ in range(args.batch_size)], batch=True,
                               layout="HWC")
        return graph(variant, x, layout)

    p = pipe()
    p.build()
    while True:
        p.run()
        yield args.batch_size


def agreement(windows: list[np.ndarray], args) -> dict:
    """Fused op vs fn.resize + fn.crop_mirror_normalize, no hiding, NCHW, over every window."""
    bs = min(args.batch_size, len(windows))
    feed = iter(windows[i:i + bs] for i in range(0, len(windows) - bs + 1, bs))

    @pipeline_def(batch_size=bs, num_threads=args.num_threads, device_id=None, seed=SEED)
    def pipe():
        x = fn.external_source(source=lambda: next(feed), batch=True, layout="HWC")
        common = dict(mirror=fn.random.coin_flip(), mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
        return (fn.dali_has.resize_mirror_normalize_hide(x, size=[CROP, CROP], patch_sizes=[0], p_hide=0.0,
                                                         **common),
                fn.crop_mirror_normalize(fn.resize(x, size=[CROP, CROP]), **common))

    p = pipe()
    p.build()
    std = np.reshape(IMAGENET_STD, (-1, 1, 1))
    worst = worst_levels = err_sum = differing = total = 0
    for _ in range(len(windows) // bs):
        for a, b in zip(*p.run()):
            d = np.abs(np.array(a, np.float64) - np.array(b, np.float64))
            worst, err_sum = max(worst, float(d.max())), err_sum + float(d.sum())
            worst_levels = max(worst_levels, int(np.rint(d * std).max()))
            differing, total = differing + int((d > 0).sum()), total + d.size
    return {"max_abs_error": worst, "mean_abs_error": err_sum / total, "max_levels_apart": worst_levels,
            "share_of_values_differing": differing / total, "values_compared": total}


def main(argv=None) -> dict:
    args = parse_args(argv)
    if not fused.load():
        raise SystemExit(f"the fused plugin cannot be built here: {fused.unavailable_reason()}")
    record = RunRecord()
    results = {}
    for set_name, paths in image_sets(args.images).items():
        windows = decoded_windows(paths)
        sides = np.array([w.shape[:2] for w in windows])
        entry = {"windows": len(windows), "window_mean_hw": sides.mean(axis=0).round(1).tolist(),
                 "shrunk_share": float((sides.min(axis=1) > CROP).mean()),
                 "agreement_without_has_nchw": agreement(windows, args), "layouts": {}}
        for layout_name, layout in LAYOUTS.items():
            streams = {v: batches(windows, v, layout, args) for v in VARIANTS}
            entry["layouts"][layout_name] = measure_wall_and_cpu(streams, warmup=args.warmup, iters=args.iters,
                                                                 runs=args.runs)
        results[set_name] = entry
    report = {"settings": vars(args), "size": CROP, "has": HAS.to_dict(), "results": results, **record.facts()}
    print(format_report(report))
    write_json(args.json, report)
    return report


def format_report(r: dict) -> str:
    s = r["settings"]
    lines = [f"{CROP}x{CROP} float32, batch {s['batch_size']}, {s['num_threads']} threads, {runs_and_load(r)}",
             "| images | layout | variant | img/s (wall) | ms/image (wall) | cpu ms/image | minus feed, cpu ms/image |",
             "|---|---|---|---:|---:|---:|---:|"]
    for set_name, entry in r["results"].items():
        for layout, variants in entry["layouts"].items():
            feed = variants["feed"]["cpu_ms_per_image"]
            for v, m in variants.items():
                net = "" if v == "feed" else f"{m['cpu_ms_per_image'] - feed:.3f}"
                lines.append(f"| {set_name} | {layout} | {v} | {m['img_s']:.0f} | {m['ms_per_image']:.3f} | "
                             f"{m['cpu_ms_per_image']:.3f} | {net} |")
    for set_name, entry in r["results"].items():
        a = entry["agreement_without_has_nchw"]
        lines.append(f"{set_name}: windows {entry['window_mean_hw']} on average, {entry['shrunk_share']:.0%} "
                     f"shrunk; fused vs chain: max {a['max_abs_error']:.4f} ({a['max_levels_apart']} level), "
                     f"mean {a['mean_abs_error']:.2e}, {a['share_of_values_differing']:.3%} of values differ")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
