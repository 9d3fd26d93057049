"""Micro-benchmark: where the training pipeline's time goes, stage by stage, on the originals and on prepared
copies, on the CPU or (`--device gpu`) on a GPU.

Graphs, each one stage longer than the one before, read the same JPEGs (shuffled, as in training):
  read        the reader alone, on the CPU in either case: fn.readers.file (the encoded bytes), or for decoded
              pixels `pipelines.reader.read_pixels` (fn.readers.numpy: the pixels copied out of the files, and
              the labels found by file name);
  decode      + random-resized-crop at decode time (`pipelines.decoder.decode_random_crop`: libjpeg-turbo on
              the CPU; nvJPEG and the hardware decoder, `mixed`, for the GPU);
  fast_idct   the same with DALI's `use_fast_idct` (libjpeg-turbo's less exact integer IDCT, FFCV's choice;
              CPU only);
  train       + resize, flip, normalize and HaS to NHWC 224x224 with the paper's HaS: the training pipeline's
              work without the hand-off to torch (which DALI 2.4's dynamic executor does through DLPack without
              a copy). CPU: the fused operator, float32, as `make_loader(train=True)` runs it; GPU: fn.resize +
              fn.crop_mirror_normalize + the HaS CUDA kernel, float16, as `dali-has bench --device gpu`;
  fused       GPU only: the train graph's work with the fused operator's CUDA kernel (`impl="fused"`: resize,
              flip, normalize and HaS in one launch) instead of the three operators; on the CPU `train` is
              already the fused operator;
  concurrent  GPU only: the train graph with DALI's `OperatorConcurrency.FULL` instead of its default,
              BACKEND. BACKEND gives all GPU operators one semaphore: one of them runs (its host work:
              argument setup, kernel launches) at a time, whichever batch it works on, so a batch's three GPU
              operators cost the sum of their host times. FULL lifts that limit for GPU and mixed operators
              (an operator still never overlaps its own previous batch, DALI's exec_graph.cc), so the resize of
              one batch can run while the normalize of the one before does: the tail then costs its slowest
              operator. More from it than from `train` = that serial host work is the limit (and
              `make_loader(..., operator_concurrency="full")` the fix); the same = it is not;
  two_pipelines  GPU only: the train graph as two pipelines with half the threads each, batches taken from
              them in turn, as a loader over two pipelines would hand them out. DALI runs a pipeline's CPU
              operators one after another and its GPU operators one at a time; if that serial host work is what
              stops one pipeline, two give more; if what they share is the limit (the card's decoder or
              kernels, or the cores: see `cores_busy`), they do not.
              (On the 2-core CPU machine two 1-thread pipelines matched one 2-thread pipeline: the cores were
              busy either way.)
  no_has      the same without Hide-and-Seek (what HaS costs: train - no_has);
  loader      the train graph as `make_loader` builds it (from a file list of the same files, labels read too),
              batches handed to torch by the DALI iterator: what the hand-off costs (loader - train).
A stage's cost is its graph's CPU time per image minus that of the graph before it (fast_idct: minus read).
`cores_busy` (cpu ms/image x img/s / 1000, the two clocks' medians): how many cores a graph keeps busy.
On the GPU the stages overlap (DALI runs the CPU, mixed and GPU stages of successive batches at once), so there
the figure to read is each graph's img/s: the ceiling that stage and those before it set.
Image sets: `dali-has bench`'s ImageNet-like originals (400-500 px), their `dali-has prepare` copy (shorter
side 256, the default), a copy bounded on the longer side at 256 (FFCV's `max_resolution`), and the default
copy stored as decoded pixels (`--encoding npy`), whose "decode" draws the window the resize then reads in
place (for the GPU: slices the window out and moves it there; no fast_idct: nothing is decoded).

Timing: `train.bench.timing.measure_wall_and_cpu` (warm-up, the graphs in alternation, median of runs), the
wall clock and the process's CPU clock (all threads; what one image costs one core) read around the same runs;
on the GPU the clocks are read after torch.cuda.synchronize().

    python -m train.bench.pipeline_stages --json pipeline_stages.json
    python -m train.bench.pipeline_stages --device gpu --batch-size 256 --num-threads 16 --json stages_gpu.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import torch
from nvidia.dali import fn, pipeline_def
from nvidia.dali.pipeline import OperatorConcurrency

from dali_has import HaSConfig, fused, resize_mirror_normalize_hide
from pipelines import make_loader
from pipelines.decoder import RANDOM_CROP_ATTEMPTS, decode_random_crop, decoder_kwargs
from pipelines.files import PIXELS_SUFFIX, write_file_list
from pipelines.reader import read_pixels
from pipelines.settings import (
    CROP,
    DEVICES,
    DTYPE_NAMES,
    DTYPES,
    HW_DECODER_LOAD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDOM_AREA,
    RANDOM_ASPECT_RATIO,
    ImageOptions,
    TrainAugment,
)
from train.bench.data import bench_prepared
from train.bench.run import DEVICE_DEFAULTS
from train.bench.timing import (
    SEED,
    RunRecord,
    add_timing_arguments,
    batch_sizes,
    device_sync,
    measure_wall_and_cpu,
    runs_and_load,
    write_json,
)
from train.bench.windows import image_sets

STAGES = ("read", "decode", "fast_idct", "train", "fused", "concurrent", "two_pipelines", "no_has", "loader")
# What each stage's own cost is counted from.
BEFORE = {"decode": "read", "fast_idct": "read", "train": "decode", "fused": "decode", "concurrent": "decode",
          "two_pipelines": "decode", "no_has": "decode", "loader": "train"}
CPU_ONLY, GPU_ONLY = ("fast_idct",), ("fused", "concurrent", "two_pipelines")
SKIPPABLE = tuple(s for s in STAGES if s not in BEFORE.values())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512, help="JPEGs per set")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where decoding and augmentation run")
    p.add_argument("--hw-decoder-load", type=float, default=HW_DECODER_LOAD,
                   help="GPU only: share of the images the hardware JPEG decoder takes (default %(default)s)")
    p.add_argument("--skip", nargs="+", action="extend", default=[], choices=SKIPPABLE, metavar="STAGE",
                   help=f"stages to leave out ({', '.join(SKIPPABLE)}: those no other stage is counted from); "
                        "given twice, both lists count")
    add_timing_arguments(p)
    p.set_defaults(has_impl="fused")  # not an option: `main` turns to the composition where the kernels cannot run
    return p.parse_args(argv)


def file_sets(images: int) -> dict[str, list[Path]]:
    """{"prepared" (shorter side 256), "prepared npy", "originals", "longer256"}: paths, sorted alike. The
    prepared copies first: they are the fastest forms, whose ceilings matter most, and a run stopped by a time
    limit keeps the sets it finished."""
    sets = image_sets(images)
    prepared = sorted(bench_prepared(images).rglob("*.jpg"))
    pixels = sorted(bench_prepared(images, encoding="npy").rglob("*.npy"))
    return {"prepared": prepared, "prepared npy": pixels, **sets}


def stages_of(paths: list[Path], device: str = "cpu") -> tuple[str, ...]:
    """The stages measured on a set: STAGES on its device (CPU_ONLY, GPU_ONLY), no fast_idct for decoded pixels."""
    return tuple(s for s in STAGES if s not in (GPU_ONLY if device == "cpu" else CPU_ONLY)
                 and (s != "fast_idct" or paths[0].suffix != PIXELS_SUFFIX))


def stage_pipeline(paths: list[Path], stage: str, args, device_id: Optional[int], *, seed: int = SEED):
    """`stage`'s graph over `paths` (not built; two_pipelines: one of the two); device_id: None on the CPU, the
    GPU's otherwise."""
    concurrency = OperatorConcurrency.FULL if stage == "concurrent" else None  # None: DALI's default, BACKEND

    @pipeline_def(batch_size=args.batch_size, num_threads=args.num_threads, device_id=device_id, seed=seed,
                  concurrency=concurrency)
    def pipe():
        files, pixels = [str(p) for p in paths], paths[0].suffix == PIXELS_SUFFIX
        if pixels:
            data, _ = read_pixels(files=files, labels=[0] * len(files), random_shuffle=True)
        else:
            data, _ = fn.readers.file(files=files, random_shuffle=True)
        if stage == "read":
            return data
        if stage == "fast_idct":
            return fn.decoders.image_random_crop(data, **decoder_kwargs("cpu"), use_fast_idct=True,
                                                 random_area=list(RANDOM_AREA),
                                                 random_aspect_ratio=list(RANDOM_ASPECT_RATIO),
                                                 num_attempts=RANDOM_CROP_ATTEMPTS)
        image = None if args.device == "cpu" else ImageOptions(data=str(paths[0].parent),
                                                               hw_decoder_load=args.hw_decoder_load)
        images, window = decode_random_crop(data, args.device, image, pixels=pixels, random_area=RANDOM_AREA,
                                            random_aspect_ratio=RANDOM_ASPECT_RATIO)
        if stage == "decode":
            return images if window is None else (images, *window)
        return resize_mirror_normalize_hide(images, size=CROP, mirror=fn.random.coin_flip(), mean=IMAGENET_MEAN,
                                            std=IMAGENET_STD, dtype=DTYPES[DTYPE_NAMES[output_dtype(args.device)]],
                                            layout="HWC", has=None if stage == "no_has" else HaSConfig(),
                                            impl="fused" if stage == "fused" else "auto", has_impl=args.has_impl,
                                            window=window)

    return pipe()


def batches(paths: list[Path], stage: str, args) -> Iterator[int]:
    """A never-restarted stream of iterations of `stage`'s graph over `paths` (two_pipelines: of its two graphs
    in turn); yields images per batch."""
    device_id = None if args.device == "cpu" else torch.cuda.current_device()
    if stage == "two_pipelines":
        half = argparse.Namespace(**{**vars(args), "num_threads": max(1, args.num_threads // 2)})
        pipes = [stage_pipeline(paths, "train", half, device_id, seed=seed) for seed in (SEED, SEED + 1)]
    else:
        pipes = [stage_pipeline(paths, stage, args, device_id)]
    for p in pipes:
        p.build()
    while True:
        for p in pipes:  # each keeps its own prefetch queue filling while the other is asked
            p.run()
            yield args.batch_size


def output_dtype(device: str) -> str:
    """The network input's dtype on `device`: `dali-has bench`'s default there."""
    return DEVICE_DEFAULTS[device]["dtype"]


def loader_batches(paths: list[Path], args) -> Iterator[int]:
    """The `train` graph's work through `make_loader` and the DALI iterator, epoch after epoch."""
    with tempfile.TemporaryDirectory() as folder:
        listed = Path(folder) / "files.txt"
        write_file_list(listed, ((path, 0) for path in paths))  # absolute paths: the files stay where they are
        augment = TrainAugment(has=HaSConfig(), has_impl=args.has_impl)
        hw = {} if args.device == "cpu" else {"hw_decoder_load": args.hw_decoder_load}
        with make_loader(str(listed), train=True, batch_size=args.batch_size, augment=augment, crop=CROP,
                         device=args.device, num_threads=args.num_threads, dtype=output_dtype(args.device),
                         layout="NHWC", seed=SEED, **hw) as loader:
            yield from batch_sizes(loader)


def kernel_choice(device: str, skip: list[str]) -> tuple[list[str], str, str | None]:
    """(stages to skip, the Hide-and-Seek operator of the graphs, a note or None) on `device`. Where the plugin's
    CUDA kernels cannot run (an old driver or card), the `fused` graph is left out and the others hide with the
    composition of DALI built-ins, so read, decode and the train graph are still measured."""
    reason = fused.gpu_unavailable_reason() if device == "gpu" else None
    if reason is None:
        return skip, "fused", None
    return ([*skip, "fused"] if "fused" not in skip else skip), "composed", (
        f"fused left out and Hide-and-Seek composed of DALI built-ins: the plugin's CUDA kernels cannot run here "
        f"({reason})")


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.device == "gpu" and not torch.cuda.is_available():
        raise SystemExit("--device gpu: no CUDA device is visible here")
    if not fused.load():
        raise SystemExit(f"the fused plugin cannot be built here: {fused.unavailable_reason()}")
    args.skip, args.has_impl, kernel_note = kernel_choice(args.device, args.skip)
    if kernel_note:
        print(kernel_note, file=sys.stderr)
    record = RunRecord()
    results, sets = {}, file_sets(args.images)
    for set_name, paths in sets.items():
        streams = {stage: loader_batches(paths, args) if stage == "loader" else batches(paths, stage, args)
                   for stage in stages_of(paths, args.device) if stage not in args.skip}
        entry = measure_wall_and_cpu(streams, warmup=args.warmup, iters=args.iters, runs=args.runs,
                                     sync=device_sync(args.device))
        for m in entry.values():  # CPU seconds per wall second; near the machine's core count: the cores are the limit
            m["cores_busy"] = m["cpu_ms_per_image"] * m["img_s"] / 1e3
        for stage, before in BEFORE.items():
            if stage not in entry:
                continue
            entry[stage]["stage_cpu_ms_per_image"] = (entry[stage]["cpu_ms_per_image"]
                                                      - entry[before]["cpu_ms_per_image"])
        mean_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        results[set_name] = {"images": len(paths), "mean_file_kb": mean_kb, "stages": entry}
        # After every set, so a run stopped by a time limit (gpu-check's) keeps the sets it finished.
        report = {"settings": vars(args), "size": CROP, "has": HaSConfig().to_dict(), "results": results,
                  "complete": len(results) == len(sets), "note": kernel_note, **record.facts()}
        write_json(args.json, report)
    print(format_report(report))
    return report


def format_report(r: dict) -> str:
    s = r["settings"]
    hw = f" (hw_decoder_load {s['hw_decoder_load']})" if s["device"] == "gpu" else ""
    lines = [f"{s['device']}{hw}, batch {s['batch_size']}, {s['num_threads']} threads, {runs_and_load(r)}",
             "| images | graph | img/s (wall) | cpu ms/image | cores busy | the stage's own cpu ms/image |",
             "|---|---|---:|---:|---:|---:|"]
    for set_name, entry in r["results"].items():
        name = f"{set_name} ({entry['mean_file_kb']:.0f} KB)"
        for stage, m in entry["stages"].items():
            own = m.get("stage_cpu_ms_per_image")
            lines.append(f"| {name} | {stage} | {m['img_s']:.0f} | {m['cpu_ms_per_image']:.3f} | "
                         f"{m['cores_busy']:.1f} | "
                         f"{'' if own is None else f'{own:.3f}'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
