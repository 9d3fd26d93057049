"""`dali-has bench`: is training input-bound? Loader and model speeds measured in one run, on one machine.

Figures (img/s, median of `runs` timed runs, see `train.bench.timing`):
  pipeline     the DALI training pipeline alone (no HaS, HaS composed of DALI built-ins, the fused HaS op),
               for every threads × hw_decoder_load combination (the sweep); the best combination is reported;
  data         timed in one alternation, at the best combination: the DALI pipeline with HaS (best
               implementation) on the original JPEGs and on a copy made by `dali-has prepare` (the generated
               set's is made once into the cache; `prepared` for --data), each in NCHW and NHWC and with every
               resize variant in `resize`; the usual torchvision DataLoader on the originals (ImageFolder,
               RandomResizedCrop, flip, ToTensor, Normalize; with and without per-image HaS; as many workers as
               DALI has threads): the baseline; and FFCV on the prepared images when `ffcv` is importable (an
               optional extra, never a dependency; FFCV has no HaS, which favours it), twice: from a .beton
               holding every image as JPEG (quality 90: the same decoding work as ours) and from one holding
               decoded pixels (FFCV's default `raw` mode: no decoding at all, 4-5x the disk); each is written
               once from the prepared folder with FFCV's own writer, at the images' prepared size;
  memory       each data-comparison loader's memory, measured alone in a fresh process (`train.bench.memory`):
               host PSS of the process and its workers, device memory on the GPU (DALI in NCHW only);
  model step   forward + backward + SGD step on synthetic tensors already on the device (bf16 autocast and
               channels_last on the GPU, as the trainer runs): what the model can consume;
  end-to-end   the same step fed by the DALI loader with HaS (best implementation).

Resize variants (`resize`): how the decoded crop window becomes the network input, `TrainAugment.resize_impl`:
"builtin" (fn.resize + fn.crop_mirror_normalize + the HaS operator) or "fused" (the plugin's one-pass
`resize_mirror_normalize_hide`; on the GPU its CUDA kernel). The pipeline rows use the built-ins, so they differ
by HaS alone.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shlex
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler
from torchvision import datasets, transforms
from tqdm import tqdm

from dali_has import HaSConfig, fused, validate
from dali_has.cache import cache_root
from dali_has.torch_transform import HideAndSeek
from pipelines import IMAGENET_MEAN, IMAGENET_STD, make_loader
from pipelines.files import load_dataset, stores_pixels
from pipelines.settings import (
    CROP,
    DEVICES,
    DTYPE_NAMES,
    HW_DECODER_LOAD,
    LAYOUTS,
    MAX_CROP,
    TrainAugment,
    default_num_threads,
    torch_device,
)
from train.bench.data import bench_jpegs, bench_prepared
from train.bench.memory import loader_memory
from train.bench.timing import (
    SEED,
    WARMUP_QUEUES,
    Measurement,
    RunRecord,
    batch_sizes,
    batches_consumed,
    device_sync,
    epoch_after_epoch,
    measure,
    nvtx_range,
    write_json,
)
from train.config import ARCH_DEFAULTS, MOMENTUM, scaled_lr
from train.models import ARCHS, build_model, check_crop_fits
from train.trainer import make_optimizer

IMPLS = ("none", "composed", "fused")
RESIZES = ("builtin", "fused")  # the resize_impl values compared ("auto" picks one of them)
SOURCES = ("originals", "prepared", "prepared npy")  # the original JPEGs, a prepared JPEG copy, decoded pixels
NUM_CLASSES = 1000  # ImageNet's classifier head, so a step costs what an ImageNet step costs
FFCV_BATCHES_AHEAD = 3  # FFCV Loader's default prefetch
FFCV_STORAGE = ("jpg", "raw")  # RGBImageField write modes compared: JPEG like ours, decoded pixels (its default)
# End-to-end below this share of min(loader, model): the two slow each other down (an H200 measured 59 %: AlexNet-GAP's
# step and DALI's GPU stages sharing the card), which the loader-vs-model verdict alone would hide.
CONTENTION_PCT = 80.0
# End-to-end above this share of min(loader, model): training cannot outrun its slower part, so one of the two
# measurements was disturbed (a probe's 3-batch model runs on a busy machine read 60 img/s against 680 end to end).
IMPLAUSIBLE_PCT = 150.0
# A 224-pixel AlexNet-GAP step on 64 images takes about 2 s on 2 CPU cores: few model batches keep the CPU bench
# within 3 minutes, while the loader stages time 2,560 images per run. Batch 16 was tried first: DALI's per-batch
# overhead then dominates and runs of ~1 s scattered by ±20 % on a quiet machine. CPU warm-up 3: oneDNN builds its
# convolution kernels during the first steps, which take several times longer.
DEVICE_DEFAULTS = {
    "cpu": dict(batch_size=64, iters=40, model_iters=2, runs=5, warmup=3, dtype="float32", hw_decoder_load=()),
    "gpu": dict(batch_size=256, iters=50, model_iters=50, runs=3, warmup=10, dtype="float16",
                hw_decoder_load=(HW_DECODER_LOAD, 0.9)),
}


@dataclass(frozen=True)
class BenchSettings:
    """What to measure. None / () = the device's default (DEVICE_DEFAULTS; threads: the usable cores).

    data: folder DIR/<class>/<image> (the torchvision baseline reads it with ImageFolder); None = a generated,
        cached ImageNet-like JPEG set (`train.bench.data`).
    threads, hw_decoder_load: swept, every combination gives a pipeline row; hw_decoder_load is GPU-only.
    iters: timed batches per run of the loader stages; model_iters: of the model step and end-to-end.
    warmup: untimed batches before the runs; loader stages use at least WARMUP_QUEUES × their queue depth.
    model: options of `train.models.build_model` (e.g. {"batch_norm": True}).
    compile: also time the model step under torch.compile (the end-to-end figure then uses it).
    prepared: a `dali-has prepare` copy of `data` (a folder) for the data comparison; None = the generated set's
        prepared copy when `data` is None, else no prepared variants.
    prepared_npy: the same with `--encoding npy` (decoded pixels); None = the generated set's when `data` is None.
    resize: `TrainAugment.resize_impl`s compared in the data comparison ("builtin", "fused"); () = both on the
        CPU, builtin on the GPU (the default there until the CUDA kernel has been measured); fused only where the
        plugin loads (and on the GPU, where its CUDA kernel can run).
    """

    data: Optional[str] = None
    device: str = "cpu"
    batch_size: Optional[int] = None
    threads: tuple[int, ...] = ()
    hw_decoder_load: tuple[float, ...] = ()
    arch: str = "alexnet_gap"
    crop: int = CROP
    dtype: Optional[str] = None
    iters: Optional[int] = None
    model_iters: Optional[int] = None
    warmup: Optional[int] = None
    runs: Optional[int] = None
    model: dict = field(default_factory=dict)
    compile: bool = False
    prepared: Optional[str] = None
    prepared_npy: Optional[str] = None
    resize: tuple[str, ...] = ()

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        validate.one_of("device", self.device, DEVICES)
        if self.device == "gpu" and not torch.cuda.is_available():
            raise ValueError("device='gpu' but no CUDA device is visible; use device='cpu'")
        if self.device == "cpu" and self.hw_decoder_load:
            raise ValueError(f"hw_decoder_load={self.hw_decoder_load!r} applies to device='gpu' only "
                             "(the hardware JPEG decoder)")
        if self.data is not None and not os.path.isdir(self.data):
            raise ValueError(f"data={self.data!r} is not a folder DIR/<class>/<image> (the torchvision "
                             "baseline reads it with ImageFolder)")
        for name, pixels in (("prepared", False), ("prepared_npy", True)):
            folder = getattr(self, name)
            if folder is not None and (not os.path.isdir(folder) or stores_pixels(load_dataset(folder)) != pixels):
                raise ValueError(f"{name}={folder!r} is not a folder of {'decoded pixels' if pixels else 'JPEGs'} "
                                 f"(`dali-has prepare --data DATA --out DIR{' --encoding npy' if pixels else ''}` "
                                 "writes one)")
        set_("resize", tuple(validate.one_of("resize", name, RESIZES) for name in self.resize)
             or (RESIZES if self.device == "cpu" else ("builtin",)))
        validate.one_of("arch", self.arch, tuple(ARCHS))
        for name, default in DEVICE_DEFAULTS[self.device].items():
            if getattr(self, name) in (None, ()):
                set_(name, default)
        validate.one_of("dtype", self.dtype, tuple(DTYPE_NAMES))
        for name in ("batch_size", "iters", "model_iters", "runs"):
            set_(name, validate.positive_int(name, getattr(self, name)))
        # Bounded before the crop-fits check builds a tensor of it (10**30 failed there, in torch's C++).
        set_("crop", validate.whole_number("crop", self.crop, minimum=1, maximum=MAX_CROP))
        set_("warmup", validate.whole_number("warmup", self.warmup))
        set_("threads", tuple(validate.positive_int("threads", t) for t in self.threads) or (default_num_threads(),))
        set_("hw_decoder_load", tuple(validate.probability("hw_decoder_load", load) for load in self.hw_decoder_load))
        validate.boolean("compile", self.compile)
        # Unknown model options and a crop the network cannot take fail here, not after the loaders' runs.
        check_crop_fits(lambda: build_model(self.arch, NUM_CLASSES, **self.model), self.crop, self.arch)

    def combinations(self) -> list[tuple[int, Optional[float]]]:
        """(threads, hw_decoder_load) of each sweep row; hw_decoder_load None on the CPU."""
        return [(t, h) for t in self.threads for h in (self.hw_decoder_load or (None,))]

    def command(self, json_path: Optional[str] = None) -> str:
        """The `dali-has bench` command line that repeats this measurement, defaults spelled out."""
        words = ["dali-has", "bench"] + (["--data", self.data] if self.data else [])
        words += (["--prepared", self.prepared] if self.prepared else [])
        words += (["--prepared-npy", self.prepared_npy] if self.prepared_npy else []) + ["--resize", *self.resize]
        words += ["--device", self.device, "--batch-size", str(self.batch_size), "--num-threads",
                  *map(str, self.threads)]
        if self.hw_decoder_load:
            words += ["--hw-decoder-load", *map(str, self.hw_decoder_load)]
        words += ["--arch", self.arch]
        for key, value in self.model.items():
            words += ["--model-opt", f"{key}={value}"]
        words += ["--crop", str(self.crop), "--dtype", self.dtype, "--iters", str(self.iters), "--model-iters",
                  str(self.model_iters), "--warmup", str(self.warmup), "--runs", str(self.runs)]
        words += ["--compile"] if self.compile else []
        return shlex.join(words + (["--json", json_path] if json_path else []))


def run_bench(settings: BenchSettings, *, progress: bool = True, json_path: Optional[str] = None) -> dict:
    """Measure every figure; returns the report as a JSON-ready dict (see `format_report`)."""
    s = settings
    record = RunRecord()
    data = s.data or str(bench_jpegs())
    timer = Timer(s, progress)
    if s.device == "gpu":
        torch.backends.cudnn.benchmark = True  # as a training script would: fastest kernels for fixed shapes
    fused_reason = _fused_unavailable_reason(s.device)

    measured = tuple(impl for impl in IMPLS if impl != "fused" or fused_reason is None)
    # A bench cut off by a time limit (gpu-check gives each one) keeps what it measured: each stage's figures are
    # written as they come, marked incomplete, and the whole report replaces them at the end.
    partial = {"complete": False, "device": s.device, "command": s.command(json_path), "settings": asdict(s),
               "fused": {"available": fused_reason is None, "reason": fused_reason}}
    write_json(json_path, partial)  # at once: an earlier run's report there must not pass for this one's
    sweep = []
    for threads, hw in s.combinations():
        timed = timer.pipelines(data, threads, hw, measured)
        sweep.append({"threads": threads, "hw_decoder_load": hw,
                      "img_s": {impl: timed[impl].median if impl in timed else None for impl in IMPLS},
                      "runs": {impl: timed[impl].to_dict() if impl in timed else None for impl in IMPLS}})
        write_json(json_path, partial | {"sweep": sweep})
    best = max(sweep, key=_has_img_s)
    has_impl = max(("composed", "fused"), key=lambda impl: best["img_s"][impl] or 0.0)

    prepared = s.prepared or (None if s.data else str(bench_prepared()))
    prepared_npy = s.prepared_npy or (None if s.data else str(bench_prepared(encoding="npy")))
    resizes = tuple(r for r in s.resize if r != "fused" or fused_reason is None)
    sources = {"originals": data, "prepared": prepared, "prepared npy": prepared_npy}
    compared = timer.data_variants(sources, best["threads"], best["hw_decoder_load"], has_impl, resizes)
    partial |= {"sweep": sweep, "data_variants": {"img_s": {v.name: m.median for v, m in compared.items()},
                                                  "runs": {v.name: m.to_dict() for v, m in compared.items()}}}
    write_json(json_path, partial)
    memory = timer.memory(sources, best["threads"], best["hw_decoder_load"], has_impl, resizes)
    partial["data_variants"]["memory_mb"] = memory
    write_json(json_path, partial)
    tv = {"has" if v.has else "none": m for v, m in compared.items() if v.loader == "torchvision"}
    steps = {"eager": _train_step(s)}
    if s.compile:
        steps["compiled"] = _train_step(s, compile=True)
    model_steps = timer.model_step(steps)
    write_json(json_path, partial | {"model_step_img_s": {name: m.median for name, m in model_steps.items()}})
    # End to end with the step training would use: compiled when asked for.
    model_step = model_steps["compiled" if s.compile else "eager"]
    end_to_end = timer.end_to_end(data, best["threads"], best["hw_decoder_load"], has_impl,
                                  steps["compiled" if s.compile else "eager"])

    pipeline = best["img_s"]
    loader_img_s, model_img_s = pipeline[has_impl], model_step.median
    return {
        "complete": True,
        "device": s.device,
        "gpu_name": torch.cuda.get_device_name() if s.device == "gpu" else None,
        "batch_size": s.batch_size, "threads": best["threads"], "hw_decoder_load": best["hw_decoder_load"],
        "crop": s.crop, "dtype": s.dtype, "arch": s.arch, "model_options": s.model,
        "iters": s.iters, "model_iters": s.model_iters, "warmup": s.warmup, "timed_runs": s.runs,
        "pipeline_img_s": pipeline,
        "torchvision_img_s": {name: m.median for name, m in tv.items()},
        "model_step_img_s": model_img_s,
        "model_step_eager_img_s": model_steps["eager"].median,
        "compile_speedup": model_steps["compiled"].median / model_steps["eager"].median if s.compile else None,
        "end_to_end_img_s": end_to_end.median,
        "end_to_end_has_impl": has_impl,
        "end_to_end_pct_of_bound": 100.0 * end_to_end.median / min(loader_img_s, model_img_s),
        "verdict": verdict(loader_img_s, model_img_s, end_to_end.median),
        "has_overhead_pct": {impl: overhead_pct(pipeline["none"], pipeline[impl])
                             for impl in ("composed", "fused")},
        "dali_vs_torchvision": {"none": pipeline["none"] / tv["none"].median,
                                "has": loader_img_s / tv["has"].median},
        "data_variants": {"img_s": {v.name: m.median for v, m in compared.items()}, "has_impl": has_impl,
                          "variants": [asdict(v) | {"name": v.name} for v in compared],
                          "ratios": data_ratios({v: m.runs for v, m in compared.items()}),
                          "prepared": prepared, "prepared_npy": prepared_npy,
                          "ffcv_unavailable": ffcv_unavailable_reason(), "memory_mb": memory},
        "runs": {"pipeline": best["runs"], "torchvision": {name: m.to_dict() for name, m in tv.items()},
                 "model_step": model_step.to_dict(), "model_step_eager": model_steps["eager"].to_dict(),
                 "end_to_end": end_to_end.to_dict(),
                 "data_variants": {v.name: m.to_dict() for v, m in compared.items()}},
        "sweep": sweep,
        "has": HaSConfig().to_dict(),
        "fused": {"available": fused_reason is None, "reason": fused_reason},
        "data": data, "data_generated": s.data is None,
        "usable_cores": default_num_threads(),
        **record.facts(),
        "command": s.command(json_path),
        "settings": asdict(s),
    }


@dataclass(frozen=True)
class Variant:
    """One stream of the data comparison."""

    loader: str  # "DALI", "torchvision" or "FFCV"
    source: str  # one of SOURCES
    layout: str  # "NCHW" or "NHWC" (FFCV: channels_last memory, as its ImageNet recipe trains)
    resize: Optional[str] = None  # DALI only: its TrainAugment.resize_impl
    has: bool = True  # FFCV has no Hide-and-Seek: it runs without, which favours it
    storage: Optional[str] = None  # FFCV only: how its .beton stores the images (FFCV_STORAGE)

    @property
    def name(self) -> str:
        return " ".join(filter(None, (self.loader, self.source, self.layout, self.resize and f"{self.resize} resize",
                                      self.storage, None if self.has else "(no HaS)")))


def comparison_variants(sources: dict[str, Optional[str]], resizes: tuple[str, ...]) -> list[Variant]:
    """The loaders of the data comparison: DALI with HaS on every source given (a folder, not None) in each layout
    and resize; FFCV on the prepared JPEG copy when it is importable; the torchvision baseline on the originals."""
    variants = [Variant("DALI", source, layout, resize) for source, folder in sources.items() if folder
                for layout in LAYOUTS for resize in resizes]
    if sources["prepared"] is not None and ffcv_unavailable_reason() is None:
        variants += [Variant("FFCV", "prepared", "NHWC", has=False, storage=storage) for storage in FFCV_STORAGE]
    return variants + [Variant("torchvision", "originals", "NCHW", has=has) for has in (False, True)]


def data_ratios(runs: dict[Variant, Sequence[float]]) -> dict[str, Optional[dict]]:
    """The comparisons the speed targets are stated in: each prepared copy (JPEG, npy) / originals and NHWC / NCHW
    for DALI (per resize variant), the best DALI variant / torchvision on the originals (both with HaS), the best
    DALI variant on each prepared copy in NHWC / FFCV on the prepared images in the same layout (per FFCV
    storage), and each resize variant / the first ("best": highest median).

    Each ratio is taken run by run: run k of every stream is timed in the same round of the alternation, so load
    that changes during the bench (another process starting) affects both sides of a run's ratio alike, but not
    the medians of two streams. Reported: {"median": median over runs, "runs": every run's ratio}; None when a
    side was not measured.
    """
    dali = {(v.source, v.layout, v.resize): r for v, r in runs.items() if v.loader == "DALI"}
    first = next(iter(dali))[2] if dali else None
    torchvision = next((r for v, r in runs.items() if v.loader == "torchvision" and v.has), None)

    def ratio(a, b) -> Optional[dict]:
        if a is None or b is None:
            return None
        per_run = [x / y for x, y in zip(a, b)]
        return {"median": statistics.median(per_run), "runs": per_run}

    prepared = SOURCES[1:]
    best_nhwc = {src: max((r for (source, layout, _), r in dali.items() if source == src and layout == "NHWC"),
                          key=statistics.median, default=None) for src in prepared}
    resizes = list(dict.fromkeys(resize for _, _, resize in dali))
    ratios = {f"{src}/originals {layout} {resize} resize": ratio(dali.get((src, layout, resize)),
                                                                 dali.get(("originals", layout, resize)))
              for src in prepared for resize in resizes for layout in LAYOUTS}
    ratios.update({f"NHWC/NCHW {src} {resize} resize": ratio(dali.get((src, "NHWC", resize)),
                                                              dali.get((src, "NCHW", resize)))
                   for resize in resizes for src in SOURCES})
    ratios["best DALI/torchvision originals"] = ratio(max(dali.values(), key=statistics.median, default=None),
                                                      torchvision)
    for v, rate in runs.items():
        if v.loader == "FFCV":
            for src in prepared:
                ratios[f"DALI {src} NHWC/FFCV prepared NHWC {v.storage}"] = ratio(best_nhwc[src], rate)
    for (src, layout, resize), rate in dali.items():
        if resize != first:
            ratios[f"{resize}/{first} resize {src} {layout}"] = ratio(rate, dali.get((src, layout, first)))
    return ratios


def verdict(loader_img_s: float, model_img_s: float, end_to_end_img_s: Optional[float] = None) -> str:
    """Which side limits training, and by how much; and whether the two, run together, slow each other down."""
    if loader_img_s < model_img_s:
        said = (f"input-bound: the loader delivers {100 * loader_img_s / model_img_s:.1f} % of what the model "
                "can consume")
    else:
        said = f"compute-bound: the model consumes {100 * model_img_s / loader_img_s:.1f} % of what the loader delivers"
    together = None if end_to_end_img_s is None else 100 * end_to_end_img_s / min(loader_img_s, model_img_s)
    if together is not None and together > IMPLAUSIBLE_PCT:
        return (f"no verdict: training ran at {together:.0f} % of the slower of loader and model alone, which it "
                "cannot outrun, so a measurement was disturbed (a busy machine, or too few --iters, --model-iters "
                "or --runs); measure again")
    if together is not None and together < CONTENTION_PCT:
        said += (f"; but together they reach only {together:.0f} % of the slower one alone: loading and the model "
                 "step compete for the same GPU or CPU")
    return said


def overhead_pct(without: float, with_: Optional[float]) -> Optional[float]:
    """How much slower, in % of `without` (negative: faster); None when `with_` was not measured."""
    return None if with_ is None else 100.0 * (without - with_) / without


def format_report(r: dict) -> str:
    """The result as a Markdown table (pasteable into a README) and the conclusions."""
    gpu = f" ({r['gpu_name']})" if r["gpu_name"] else ""
    hw = f", hw_decoder_load {r['hw_decoder_load']}" if r["hw_decoder_load"] is not None else ""
    data = "generated ImageNet-like JPEGs" if r["data_generated"] else r["data"]
    lines = [f"device {r['device']}{gpu}, {r['usable_cores']} cores (load average {r['load_average']['start'][0]:.1f} "
             f"at start), batch {r['batch_size']}, {r['crop']}² {r['dtype']}, {r['arch']}, {data}, "
             f"median of {r['timed_runs']} runs",
             "", "| stage | img/s | runs |", "|---|---:|---|"]

    def row(name: str, m: Optional[dict]) -> None:  # m None: the fused op could not be used
        if m is None:
            lines.append(f"| {name} | n/a | {r['fused']['reason']} |")
        else:
            lines.append(f"| {name} | {m['img_s']:.1f} | {' '.join(f'{v:.1f}' for v in m['runs'])} |")

    runs = r["runs"]
    where = f"{r['threads']} threads{hw}"
    row(f"DALI pipeline, no HaS ({where})", runs["pipeline"]["none"])
    row("DALI pipeline + HaS composed", runs["pipeline"]["composed"])
    row("DALI pipeline + HaS fused", runs["pipeline"]["fused"])
    row(f"torchvision DataLoader, {r['threads']} workers, no HaS", runs["torchvision"]["none"])
    row("torchvision DataLoader + per-image HaS", runs["torchvision"]["has"])
    if r["compile_speedup"] is not None:
        row(f"model step, {r['arch']}, synthetic on-device input, eager", runs["model_step_eager"])
        row(f"model step, {r['arch']}, torch.compile ({r['compile_speedup']:.2f}x eager)", runs["model_step"])
    else:
        row(f"model step, {r['arch']}, synthetic on-device input", runs["model_step"])
    row(f"end-to-end training, DALI + HaS {r['end_to_end_has_impl']}", runs["end_to_end"])
    compared = r["data_variants"]
    lines += ["", f"Data comparison (with HaS {compared['has_impl']} unless said; one alternation):", "",
              "| loader, data, layout | img/s | runs |", "|---|---:|---|"]
    for name in compared["img_s"]:
        m = runs["data_variants"][name]
        lines.append(f"| {name} | {m['img_s']:.1f} | {' '.join(f'{v:.1f}' for v in m['runs'])} |")
    lines.append("ratios (median of the runs' ratios, min-max): " + ", ".join(
        f"{key} {_ratio_text(value)}" for key, value in compared["ratios"].items()))
    if compared["prepared"] is None:
        lines.append("no prepared variants: give --prepared DIR (a `dali-has prepare` copy of --data)")
    if compared["ffcv_unavailable"]:
        lines.append(f"no FFCV variant: {compared['ffcv_unavailable']}")
    lines += ["", "Memory each loader holds, measured alone (host: PSS of its process and workers; device: drop "
              "in free memory):", "", "| loader, data, layout | host MB | device MB |", "|---|---:|---:|"]
    for name, m in compared["memory_mb"].items():
        figures = f"{m['error']} | |" if "error" in m else \
            f"{_number(m['host_mb'], '.0f')} | {_number(m['device_mb'], '.0f')} |"
        lines.append(f"| {name} | {figures}")
    lines += [f"{name}: the measuring process's {m['exit']}" for name, m in compared["memory_mb"].items()
              if "exit" in m]
    if len(r["sweep"]) > 1:
        lines += ["", "| threads | hw_decoder_load | none | composed | fused |", "|---:|---:|---:|---:|---:|"]
        lines += [f"| {w['threads']} | {w['hw_decoder_load']} | "
                  + " | ".join(_number(w["img_s"][impl]) for impl in IMPLS) + " |" for w in r["sweep"]]
    overhead = ", ".join(f"{impl} {_number(pct)} %" for impl, pct in r["has_overhead_pct"].items())
    ratio = r["dali_vs_torchvision"]
    lines += ["", f"HaS overhead (pipeline img/s lost vs no HaS): {overhead}",
              f"DALI vs torchvision: {ratio['none']:.2f}x without HaS, {ratio['has']:.2f}x with HaS",
              f"end-to-end: {r['end_to_end_pct_of_bound']:.0f} % of min(loader, model)",
              f"verdict: {r['verdict']}"]
    return "\n".join(lines)


def _ratio_text(ratio: Optional[dict]) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio['median']:.2f} ({min(ratio['runs']):.2f}-{max(ratio['runs']):.2f})"


def _number(value: Optional[float], spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def _has_img_s(row: dict) -> float:
    """A sweep row's rate with HaS, best implementation: what training with HaS would get."""
    return max(row["img_s"]["composed"] or 0.0, row["img_s"]["fused"] or 0.0)


class Timer:
    """Builds each stage's batch streams and times them, with a progress bar and an NVTX range."""

    def __init__(self, settings: BenchSettings, progress: bool):
        self.s, self.progress = settings, progress

    def pipelines(self, data: str, threads: int, hw: Optional[float], impls: tuple[str, ...]) -> dict:
        """impl -> Measurement of the DALI training pipeline alone, the variants timed in alternation."""
        with contextlib.ExitStack() as stack:
            loaders = {impl: stack.enter_context(self._dali_loader(data, threads, hw, impl)) for impl in impls}
            streams = {impl: batch_sizes(loader)
                       for impl, loader in loaders.items()}
            depth = max(loader.pipeline.prefetch_queue_depth for loader in loaders.values())
            label = f"pipeline, {threads} threads" + (f", hw {hw}" if hw is not None else "")
            return self._time(label, streams, self._loader_warmup(depth), self.s.iters)

    def data_variants(self, sources: dict[str, Optional[str]], threads: int, hw: Optional[float], has_impl: str,
                      resizes: tuple[str, ...]) -> dict[Variant, Measurement]:
        """Variant -> Measurement of the data comparison, all timed in one alternation: the DALI variants with
        HaS, the torchvision DataLoader baseline (`threads` workers) with and without per-image HaS, FFCV."""
        with contextlib.ExitStack() as stack:
            streams, warmups, iters = {}, {}, {}
            for v in comparison_variants(sources, resizes):
                streams[v], warmups[v.name] = self.stream(v, sources[v.source], threads, hw, has_impl, stack)
                # a DataLoader's batches arrive in bursts of one per worker: a run times whole bursts
                iters[v.name] = whole_rounds(self.s.iters, threads) if v.loader == "torchvision" else self.s.iters
            timed = self._time("data comparison", {v.name: b for v, b in streams.items()}, warmups, iters)
        return {v: timed[v.name] for v in streams}

    def stream(self, v: Variant, folder: str, threads: int, hw: Optional[float], has_impl: str,
               stack: contextlib.ExitStack) -> tuple[Iterator[int], int]:
        """One data-comparison variant's batch stream (its loader closed with `stack`) and its warm-up batches."""
        s = self.s
        if v.loader == "DALI":
            loader = stack.enter_context(self._dali_loader(folder, threads, hw, has_impl, v.layout, v.resize))
            return (batch_sizes(loader),
                    self._loader_warmup(loader.pipeline.prefetch_queue_depth))
        if v.loader == "FFCV":
            return ffcv_batches(s, folder, threads, v.storage), self._loader_warmup(FFCV_BATCHES_AHEAD)
        # The torchvision loader gets a fresh DataLoader every turn (see _torchvision_batches), whose empty queue
        # one queue's worth of batches brings to a steady state.
        warmup = max(s.warmup, 2 * threads)
        return _torchvision_batches(s, folder, threads, v.has, warmup + whole_rounds(s.iters, threads)), warmup

    def memory(self, sources: dict[str, Optional[str]], threads: int, hw: Optional[float], has_impl: str,
               resizes: tuple[str, ...]) -> dict[str, dict]:
        """Variant name -> the memory its loader holds (`train.bench.memory`), each measured alone: the DALI
        variants in NCHW (the layout changes no buffer's size), torchvision with HaS, FFCV."""
        measured = [v for v in comparison_variants(sources, resizes)
                    if (v.loader != "DALI" or v.layout == "NCHW") and (v.loader != "torchvision" or v.has)]
        spec = {"settings": asdict(self.s), "threads": threads, "hw_decoder_load": hw, "has_impl": has_impl}
        result = {}
        for v in tqdm(measured, desc="memory", unit="loader", leave=False, disable=not self.progress):
            result[v.name] = loader_memory(spec | {"variant": asdict(v), "folder": sources[v.source]})
        return result

    def model_step(self, steps: dict) -> dict[str, Measurement]:
        """name -> Measurement of each training step (eager, compiled) on the same synthetic batch, in alternation."""
        s = self.s
        device = torch_device(s.device)
        images = torch.randn(s.batch_size, 3, s.crop, s.crop, device=device, dtype=getattr(torch, s.dtype))
        labels = torch.randint(NUM_CLASSES, (s.batch_size,), device=device)
        streams = {name: (step(images, labels) for _ in itertools.repeat(None)) for name, step in steps.items()}
        return self._time(f"model step {s.arch}", streams, s.warmup, s.model_iters)

    def end_to_end(self, data: str, threads: int, hw: Optional[float], impl: str, step) -> Measurement:
        with self._dali_loader(data, threads, hw, impl) as loader:
            label = f"end-to-end {self.s.arch} + HaS {impl}"
            streams = {label: (step(images, labels) for images, labels in epoch_after_epoch(loader))}
            return self._time(label, streams, self._loader_warmup(loader.pipeline.prefetch_queue_depth),
                              self.s.model_iters)[label]

    def _dali_loader(self, data: str, threads: int, hw: Optional[float], impl: str, layout: str = "NCHW",
                     resize: str = "builtin"):
        s = self.s
        hw_kwargs = {} if hw is None else {"hw_decoder_load": hw}
        # The pipeline rows use the built-in resize chain, so they differ by Hide-and-Seek alone.
        augment = TrainAugment(resize_impl=resize) if impl == "none" else \
            TrainAugment(has=HaSConfig(), has_impl=impl, resize_impl=resize)
        return make_loader(data, train=True, batch_size=s.batch_size, augment=augment, crop=s.crop, device=s.device,
                           seed=SEED, num_threads=threads, dtype=s.dtype, layout=layout, **hw_kwargs)

    def _loader_warmup(self, queue_depth: int) -> int:
        return max(self.s.warmup, WARMUP_QUEUES * queue_depth)

    def _time(self, label: str, streams: dict, warmup: Union[int, dict[str, int]],
              iters: Union[int, dict[str, int]]) -> dict[str, Measurement]:
        s = self.s
        warmups = warmup if isinstance(warmup, dict) else dict.fromkeys(streams, warmup)
        timed_iters = iters if isinstance(iters, dict) else dict.fromkeys(streams, iters)
        total = sum(batches_consumed(len(streams), warmup=warmups[name], iters=timed_iters[name], runs=s.runs)
                    for name in streams)
        with nvtx_range(label), contextlib.ExitStack() as stack, tqdm(
                total=total, desc=label, unit="batch", leave=False, disable=not self.progress) as bar:
            for batches in streams.values():  # ends loaders' iterations (and DataLoader workers) when done
                stack.callback(batches.close)
            ticking = {name: _ticking(batches, bar) for name, batches in streams.items()}
            timed = measure(ticking, warmup=warmup, iters=iters, runs=s.runs, sync=device_sync(s.device))
        if self.progress:
            for name, m in timed.items():
                tqdm.write(f"{label}{'' if name == label else ', ' + name}: {m.median:.1f} img/s")
        return timed


def _ticking(batches: Iterator[int], bar: tqdm) -> Iterator[int]:
    for images in batches:
        bar.update()
        yield images


def whole_rounds(iters: int, workers: int) -> int:
    """`iters` rounded up to whole rounds of `workers` batches. A DataLoader's workers start together and each
    delivers one batch per round, so batches arrive in bursts of `workers`: a run shorter than a round, or not a
    whole number of them, times a burst (on an H200 with 16 workers, 10 batches once timed at 90,000 img/s) or
    a gap (1,800 img/s) instead of the rate."""
    return -(-iters // workers) * workers


def _torchvision_batches(s: BenchSettings, data: str, workers: int, has: bool, per_turn: int) -> Iterator[int]:
    """Batches of the torchvision baseline, from a fresh DataLoader for each turn of `per_turn` batches (its
    warm-up and timed run in the alternation). One DataLoader for the whole alternation would keep its workers
    prefetching while the other loaders are timed: on 16 cores they took the CPU from DALI's decoders (DALI's
    runs after torchvision's first turn fell from 29,000 to 9,000 img/s). Workers start from a fork server,
    not by forking this process: a fork here would first stop the thread pools of the loaders timed alongside
    (FFCV's numba pool then ran at half speed, "Unable to join threads to shut down before fork()")."""
    steps = [transforms.RandomResizedCrop(s.crop), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
             transforms.Normalize([m / 255 for m in IMAGENET_MEAN], [d / 255 for d in IMAGENET_STD])]
    if has:
        steps.append(HideAndSeek())
    # allow_empty: an empty class folder keeps its label, as DALI's reader and `dali-has train` keep it.
    dataset = datasets.ImageFolder(data, transform=transforms.Compose(steps), allow_empty=True)
    generator = torch.Generator().manual_seed(SEED)
    gpu = s.device == "gpu"
    while True:  # the workers of a finished turn idle until this generator resumes, then exit
        sampler = RandomSampler(dataset, num_samples=per_turn * s.batch_size, generator=generator)
        loader = DataLoader(dataset, batch_size=s.batch_size, sampler=sampler, num_workers=workers, pin_memory=gpu,
                            drop_last=True, multiprocessing_context="forkserver" if workers else None)
        for images, labels in loader:
            if gpu:  # DALI delivers on the GPU; the baseline must get there too
                images.to("cuda", non_blocking=True)
            yield len(labels)


def ffcv_unavailable_reason() -> Optional[str]:
    try:
        import ffcv  # noqa: F401  (an optional extra: compared with when installed)
    except Exception as error:  # noqa: BLE001 - ImportError, or a broken install (missing libturbojpeg, ...)
        return f"ffcv is not importable ({type(error).__name__}: {error})"
    return None


def ffcv_batches(s: BenchSettings, prepared: str, workers: int, storage: str) -> Iterator[int]:
    """FFCV's ImageNet training pipeline on the prepared images: random-resized-crop at decode time, flip,
    channels_last float32 tensor normalized like ours, `workers` threads, RANDOM order, epoch after epoch. No
    Hide-and-Seek: FFCV has none, and adding ours in Python would measure our glue, not FFCV."""
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, Squeeze, ToTensor, ToTorchImage

    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    loader = Loader(str(_ffcv_dataset(prepared, workers, storage)), batch_size=s.batch_size, num_workers=workers,
                    order=OrderOption.RANDOM, drop_last=True, seed=SEED, batches_ahead=FFCV_BATCHES_AHEAD,
                    # Normalized while still a numpy NHWC batch (FFCV's CPU order; with ToTorchImage before the
                    # jitted NormalizeImage, FFCV 1.0.2's stage grouping never terminates).
                    pipelines={"image": [RandomResizedCropRGBImageDecoder((s.crop, s.crop)), RandomHorizontalFlip(),
                                         NormalizeImage(mean, std, np.float32), ToTensor(),
                                         ToTorchImage(channels_last=True)],
                               "label": [IntDecoder(), ToTensor(), Squeeze()]})
    while True:
        for _, labels in loader:
            yield len(labels)


def _ffcv_dataset(prepared: str, workers: int, storage: str) -> Path:
    """FFCV's .beton of the prepared folder, written once into the cache with FFCV's writer, the images at their
    prepared size, stored as `storage` ("jpg": JPEG quality 90; "raw": decoded pixels)."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    folder = Path(prepared).resolve()
    key = hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    path = cache_root() / f"ffcv-{key}-{folder.name}-{storage}.beton"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        writer = DatasetWriter(str(partial), {"image": RGBImageField(write_mode=storage, jpeg_quality=90),
                                              "label": IntField()}, num_workers=workers)
        writer.from_indexed_dataset(datasets.ImageFolder(str(folder), allow_empty=True))
        os.replace(partial, path)
    return path


def _train_step(s: BenchSettings, compile: bool = False):
    """A fresh model's training step on one batch: the trainer's step without its per-step loss readback, which
    would synchronize the GPU every batch. compile=True: the model under torch.compile, as `--compile` trains it
    (its compilation happens in the warm-up batches, which are not timed)."""
    gpu = s.device == "gpu"
    model = build_model(s.arch, NUM_CLASSES, **s.model).to(torch_device(s.device))
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    # The trainer's default optimizer for this architecture (the paper's SGD), at this batch size.
    defaults = ARCH_DEFAULTS[s.arch]
    opt = make_optimizer(model, "sgd", lr=scaled_lr(defaults["lr"], s.batch_size), momentum=MOMENTUM,
                         weight_decay=defaults["weight_decay"])

    def step(images: torch.Tensor, labels: torch.Tensor) -> int:
        # On the GPU bf16 autocast takes any input dtype; the CPU runs float32 like the trainer.
        images = images.contiguous(memory_format=torch.channels_last) if gpu else images.float()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
            loss = F.cross_entropy(net(images).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return len(labels)

    return step


def _fused_unavailable_reason(device: str) -> Optional[str]:
    if not fused.load():
        return fused.unavailable_reason()
    return fused.gpu_unavailable_reason() if device == "gpu" else None
