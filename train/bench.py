"""`dali-has bench`: is training input-bound? Loader and model speeds measured in one run, on one machine.

Figures (img/s, median of `runs` timed runs, see `train.bench_timing`):
  pipeline     the DALI training pipeline alone (no HaS, HaS composed of DALI built-ins, the fused HaS op),
               for every threads × hw_decoder_load combination (the sweep); the best combination is reported;
  torchvision  the usual DataLoader (ImageFolder, RandomResizedCrop, flip, ToTensor, Normalize; + per-image
               HaS), as many workers as the best combination's DALI threads: the baseline, in the same run;
  model step   forward + backward + SGD step on synthetic tensors already on the device (bf16 autocast and
               channels_last on the GPU, as the trainer runs): what the model can consume;
  end-to-end   the same step fed by the DALI loader with HaS (best implementation).
"""
from __future__ import annotations

import contextlib
import itertools
import os
import platform
import shlex
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Iterator, Optional

import numpy as np
import nvidia.dali
import PIL
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, RandomSampler
from torchvision import datasets, transforms
from tqdm import __version__ as tqdm_version
from tqdm import tqdm

from dali_has import HaSConfig, fused
from dali_has.torch_transform import HideAndSeek
from pipelines import IMAGENET_MEAN, IMAGENET_STD, make_loader
from pipelines.options import default_num_threads, positive_int
from train.bench_data import bench_jpegs
from train.bench_timing import Measurement, batches_consumed, device_sync, measure, nvtx_range
from train.config import ARCHS, TrainConfig
from train.models import build_model
from train.trainer import build_optimizer

IMPLS = ("none", "composed", "fused")
NUM_CLASSES = 1000  # ImageNet's classifier head, so a step costs what an ImageNet step costs
WARMUP_QUEUES = 3  # loader stages warm up for at least this many times their prefetch queue depth
SEED = 0
# A 224-pixel AlexNet-GAP step on 64 images takes about 2 s on 2 CPU cores: few model batches keep the CPU bench
# within 3 minutes, while the loader stages time 2,560 images per run. Batch 16 was tried first: DALI's per-batch
# overhead then dominates and runs of ~1 s scattered by ±20 % on a quiet machine. CPU warm-up 3: oneDNN builds its
# convolution kernels during the first steps, which take several times longer.
DEVICE_DEFAULTS = {
    "cpu": dict(batch_size=64, iters=40, model_iters=2, runs=5, warmup=3, dtype="float32", hw_decoder_load=()),
    "gpu": dict(batch_size=256, iters=50, model_iters=50, runs=3, warmup=10, dtype="float16",
                hw_decoder_load=(0.65, 0.9)),
}


@dataclass(frozen=True)
class BenchSettings:
    """What to measure. None / () = the device's default (DEVICE_DEFAULTS; threads: the usable cores).

    data: folder DIR/<class>/<image> (the torchvision baseline reads it with ImageFolder); None = a generated,
        cached ImageNet-like JPEG set (`train.bench_data`).
    threads, hw_decoder_load: swept, every combination gives a pipeline row; hw_decoder_load is GPU-only.
    iters: timed batches per run of the loader stages; model_iters: of the model step and end-to-end.
    warmup: untimed batches before the runs; loader stages use at least WARMUP_QUEUES × their queue depth.
    model: options of `train.models.build_model` (e.g. {"batch_norm": True}).
    """

    data: Optional[str] = None
    device: str = "cpu"
    batch_size: Optional[int] = None
    threads: tuple[int, ...] = ()
    hw_decoder_load: tuple[float, ...] = ()
    arch: str = "alexnet_gap"
    crop: int = 224
    dtype: Optional[str] = None
    iters: Optional[int] = None
    model_iters: Optional[int] = None
    warmup: Optional[int] = None
    runs: Optional[int] = None
    model: dict = field(default_factory=dict)

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        if self.device not in DEVICE_DEFAULTS:
            raise ValueError(f"device={self.device!r}; expected one of {tuple(DEVICE_DEFAULTS)}")
        if self.device == "gpu" and not torch.cuda.is_available():
            raise ValueError("device='gpu' but no CUDA device is visible; use device='cpu'")
        if self.device == "cpu" and self.hw_decoder_load:
            raise ValueError(f"hw_decoder_load={self.hw_decoder_load!r} applies to device='gpu' only "
                             "(the hardware JPEG decoder)")
        if self.data is not None and not os.path.isdir(self.data):
            raise ValueError(f"data={self.data!r} is not a folder DIR/<class>/<image> (the torchvision "
                             "baseline reads it with ImageFolder)")
        if self.arch not in ARCHS:
            raise ValueError(f"arch={self.arch!r}; expected one of {ARCHS}")
        for name, default in DEVICE_DEFAULTS[self.device].items():
            if getattr(self, name) in (None, ()):
                set_(name, default)
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"dtype={self.dtype!r}; expected 'float32' or 'float16'")
        for name in ("batch_size", "crop", "iters", "model_iters", "runs"):
            set_(name, positive_int(name, getattr(self, name)))
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup={self.warmup!r} must be a whole number >= 0")
        set_("threads", tuple(positive_int("threads", t) for t in self.threads) or (default_num_threads(),))
        set_("hw_decoder_load", tuple(self.hw_decoder_load))
        for load in self.hw_decoder_load:
            if isinstance(load, bool) or not isinstance(load, (int, float)) or not 0 <= load <= 1:
                raise ValueError(f"hw_decoder_load={load!r} must be a number in [0, 1]")
        build_model(self.arch, NUM_CLASSES, **self.model)  # unknown model options fail here, not mid-bench

    def combinations(self) -> list[tuple[int, Optional[float]]]:
        """(threads, hw_decoder_load) of each sweep row; hw_decoder_load None on the CPU."""
        return [(t, h) for t in self.threads for h in (self.hw_decoder_load or (None,))]

    def command(self, json_path: Optional[str] = None) -> str:
        """The `dali-has bench` command line that repeats this measurement, defaults spelled out."""
        words = ["dali-has", "bench"] + (["--data", self.data] if self.data else [])
        words += ["--device", self.device, "--batch-size", str(self.batch_size), "--threads", *map(str, self.threads)]
        if self.hw_decoder_load:
            words += ["--hw-decoder-load", *map(str, self.hw_decoder_load)]
        words += ["--arch", self.arch]
        for key, value in self.model.items():
            words += ["--model-opt", f"{key}={value}"]
        words += ["--crop", str(self.crop), "--dtype", self.dtype, "--iters", str(self.iters), "--model-iters",
                  str(self.model_iters), "--warmup", str(self.warmup), "--runs", str(self.runs)]
        return shlex.join(words + (["--json", json_path] if json_path else []))


def run_bench(settings: BenchSettings, *, progress: bool = True, json_path: Optional[str] = None) -> dict:
    """Measure every figure; returns the report as a JSON-ready dict (see `format_report`)."""
    s = settings
    started, load_start = time.perf_counter(), os.getloadavg()
    data = s.data or str(bench_jpegs())
    timer = _Timer(s, progress)
    if s.device == "gpu":
        torch.backends.cudnn.benchmark = True  # as a training script would: fastest kernels for fixed shapes
    fused_reason = _fused_unavailable_reason(s.device)

    measured = tuple(impl for impl in IMPLS if impl != "fused" or fused_reason is None)
    sweep = []
    for threads, hw in s.combinations():
        timed = timer.pipelines(data, threads, hw, measured)
        sweep.append({"threads": threads, "hw_decoder_load": hw,
                      "img_s": {impl: timed[impl].median if impl in timed else None for impl in IMPLS},
                      "runs": {impl: timed[impl].to_dict() if impl in timed else None for impl in IMPLS}})
    best = max(sweep, key=_has_img_s)
    has_impl = max(("composed", "fused"), key=lambda impl: best["img_s"][impl] or 0.0)

    tv = timer.torchvision(data, best["threads"])
    step = _train_step(s)
    model_step = timer.model_step(step)
    end_to_end = timer.end_to_end(data, best["threads"], best["hw_decoder_load"], has_impl, step)

    pipeline = best["img_s"]
    loader_img_s, model_img_s = pipeline[has_impl], model_step.median
    return {
        "device": s.device,
        "gpu_name": torch.cuda.get_device_name() if s.device == "gpu" else None,
        "batch_size": s.batch_size, "threads": best["threads"], "hw_decoder_load": best["hw_decoder_load"],
        "crop": s.crop, "dtype": s.dtype, "arch": s.arch, "model_options": s.model,
        "iters": s.iters, "model_iters": s.model_iters, "warmup": s.warmup, "timed_runs": s.runs,
        "pipeline_img_s": pipeline,
        "torchvision_img_s": {name: m.median for name, m in tv.items()},
        "model_step_img_s": model_img_s,
        "end_to_end_img_s": end_to_end.median,
        "end_to_end_has_impl": has_impl,
        "end_to_end_pct_of_bound": 100.0 * end_to_end.median / min(loader_img_s, model_img_s),
        "verdict": verdict(loader_img_s, model_img_s),
        "has_overhead_pct": {impl: overhead_pct(pipeline["none"], pipeline[impl])
                             for impl in ("composed", "fused")},
        "dali_vs_torchvision": {"none": pipeline["none"] / tv["none"].median,
                                "has": loader_img_s / tv["has"].median},
        "runs": {"pipeline": best["runs"], "torchvision": {name: m.to_dict() for name, m in tv.items()},
                 "model_step": model_step.to_dict(), "end_to_end": end_to_end.to_dict()},
        "sweep": sweep,
        "has": HaSConfig().to_dict(),
        "fused": {"available": fused_reason is None, "reason": fused_reason},
        "data": data, "data_generated": s.data is None,
        "versions": _versions(),
        "cpu_count": os.cpu_count(), "usable_cores": default_num_threads(), "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "seconds": time.perf_counter() - started,
        "command": s.command(json_path),
        "settings": asdict(s),
    }


def verdict(loader_img_s: float, model_img_s: float) -> str:
    """Which side limits training, and by how much."""
    if loader_img_s < model_img_s:
        return (f"input-bound: the loader delivers {100 * loader_img_s / model_img_s:.1f} % of what the model "
                "can consume")
    return f"compute-bound: the model consumes {100 * model_img_s / loader_img_s:.1f} % of what the loader delivers"


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
    row(f"model step, {r['arch']}, synthetic on-device input", runs["model_step"])
    row(f"end-to-end training, DALI + HaS {r['end_to_end_has_impl']}", runs["end_to_end"])
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


def _number(value: Optional[float], spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def _has_img_s(row: dict) -> float:
    """A sweep row's rate with HaS, best implementation: what training with HaS would get."""
    return max(row["img_s"]["composed"] or 0.0, row["img_s"]["fused"] or 0.0)


class _Timer:
    """Builds each stage's batch streams and times them, with a progress bar and an NVTX range."""

    def __init__(self, settings: BenchSettings, progress: bool):
        self.s, self.progress = settings, progress

    def pipelines(self, data: str, threads: int, hw: Optional[float], impls: tuple[str, ...]) -> dict:
        """impl -> Measurement of the DALI training pipeline alone, the variants timed in alternation."""
        with contextlib.ExitStack() as stack:
            loaders = {impl: stack.enter_context(self._dali_loader(data, threads, hw, impl)) for impl in impls}
            streams = {impl: (len(labels) for _, labels in _epochs(loader)) for impl, loader in loaders.items()}
            depth = max(loader.pipeline.prefetch_queue_depth for loader in loaders.values())
            label = f"pipeline, {threads} threads" + (f", hw {hw}" if hw is not None else "")
            return self._time(label, streams, self._loader_warmup(depth), self.s.iters)

    def torchvision(self, data: str, workers: int) -> dict:
        """{"none", "has"} -> Measurement of the torchvision DataLoader baseline."""
        s = self.s
        queue = 2 * workers  # each worker prefetches 2 batches (DataLoader's prefetch_factor)
        warmup = self._loader_warmup(queue)
        # + queue: the sampler outlasts the measurement, so workers stay busy up to the last timed batch.
        batches = batches_consumed(2, warmup=warmup, iters=s.iters, runs=s.runs) + queue
        streams = {name: _torchvision_batches(s, data, workers, name == "has", batches) for name in ("none", "has")}
        return self._time(f"torchvision, {workers} workers", streams, warmup, s.iters)

    def model_step(self, step) -> Measurement:
        s = self.s
        device = _torch_device(s.device)
        images = torch.randn(s.batch_size, 3, s.crop, s.crop, device=device, dtype=getattr(torch, s.dtype))
        labels = torch.randint(NUM_CLASSES, (s.batch_size,), device=device)
        label = f"model step {s.arch}"
        return self._time(label, {label: (step(images, labels) for _ in itertools.repeat(None))}, s.warmup,
                          s.model_iters)[label]

    def end_to_end(self, data: str, threads: int, hw: Optional[float], impl: str, step) -> Measurement:
        with self._dali_loader(data, threads, hw, impl) as loader:
            label = f"end-to-end {self.s.arch} + HaS {impl}"
            streams = {label: (step(images, labels) for images, labels in _epochs(loader))}
            return self._time(label, streams, self._loader_warmup(loader.pipeline.prefetch_queue_depth),
                              self.s.model_iters)[label]

    def _dali_loader(self, data: str, threads: int, hw: Optional[float], impl: str):
        s = self.s
        hw_kwargs = {} if hw is None else {"hw_decoder_load": hw}
        return make_loader(data, train=True, batch_size=s.batch_size, crop=s.crop, device=s.device,
                           has=None if impl == "none" else HaSConfig(),
                           has_impl="auto" if impl == "none" else impl, seed=SEED, num_threads=threads,
                           dtype=getattr(torch, s.dtype), **hw_kwargs)

    def _loader_warmup(self, queue_depth: int) -> int:
        return max(self.s.warmup, WARMUP_QUEUES * queue_depth)

    def _time(self, label: str, streams: dict, warmup: int, iters: int) -> dict[str, Measurement]:
        s = self.s
        total = len(streams) * batches_consumed(len(streams), warmup=warmup, iters=iters, runs=s.runs)
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


def _epochs(loader):
    """The loader's batches, epoch after epoch: an epoch that ends normally continues without a rebuild."""
    while True:
        yield from loader


def _torchvision_batches(s: BenchSettings, data: str, workers: int, has: bool, batches: int) -> Iterator[int]:
    steps = [transforms.RandomResizedCrop(s.crop), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
             transforms.Normalize([m / 255 for m in IMAGENET_MEAN], [d / 255 for d in IMAGENET_STD])]
    if has:
        steps.append(HideAndSeek())
    dataset = datasets.ImageFolder(data, transform=transforms.Compose(steps))
    # One sampler "epoch" covering the whole measurement: no end-of-epoch stall where workers restart.
    sampler = RandomSampler(dataset, num_samples=batches * s.batch_size,
                            generator=torch.Generator().manual_seed(SEED))
    gpu = s.device == "gpu"
    loader = DataLoader(dataset, batch_size=s.batch_size, sampler=sampler, num_workers=workers, pin_memory=gpu,
                        drop_last=True)
    for images, labels in loader:
        if gpu:  # DALI delivers on the GPU; the baseline must get there too
            images.to("cuda", non_blocking=True)
        yield len(labels)


def _train_step(s: BenchSettings):
    """A fresh model's training step on one batch: the trainer's step without its per-step loss readback, which
    would synchronize the GPU every batch."""
    gpu = s.device == "gpu"
    model = build_model(s.arch, NUM_CLASSES, **s.model).to(_torch_device(s.device))
    if gpu:
        model = model.to(memory_format=torch.channels_last)
    # The trainer's optimizer with this architecture's default hyper-parameters; data and out are not used.
    opt = build_optimizer(model, TrainConfig(data="", out="", arch=s.arch, batch_size=s.batch_size))

    def step(images: torch.Tensor, labels: torch.Tensor) -> int:
        # On the GPU bf16 autocast takes any input dtype; the CPU runs float32 like the trainer.
        images = images.contiguous(memory_format=torch.channels_last) if gpu else images.float()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=gpu):
            loss = F.cross_entropy(model(images).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return len(labels)

    return step


def _torch_device(device: str) -> torch.device:
    return torch.device("cuda" if device == "gpu" else "cpu")


def _fused_unavailable_reason(device: str) -> Optional[str]:
    if not fused.load():
        return fused.unavailable_reason()
    return fused.gpu_unavailable_reason() if device == "gpu" else None


def _versions() -> dict:
    return {"python": platform.python_version(), "dali_has": metadata.version("dali-has"),
            "nvidia_dali": nvidia.dali.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__, "tqdm": tqdm_version, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}


def _cpu_model() -> Optional[str]:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or None
