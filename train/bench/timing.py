"""How `dali-has bench` times a stage: warm-up batches untimed, then several timed runs, the median reported.

A stream is an iterator that does one batch of work per `next()` and yields how many images it handled. It is
never restarted between a warm-up and the run after it, so a loader's prefetch queue, drained during warm-up,
cannot refill behind the clock's back: every timed batch is produced while the clock runs. Variants compared
with each other (no HaS / composed / fused) are timed in alternation, run 1 of each, then run 2 of each, so a
machine whose load drifts during the bench shifts all of them alike instead of biasing the one measured last.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional, Union

import numpy as np
import nvidia.dali
import PIL
import torch
import torchvision
from tqdm import __version__ as tqdm_version

from pipelines.own_files import written_whole

SEED = 0  # every bench's loaders and random draws: a rerun times the same batches
WARMUP_QUEUES = 3  # loader stages warm up for at least this many times their prefetch queue depth


@dataclass(frozen=True)
class Measurement:
    """img/s of each timed run of `iters` batches; `warmup` untimed batches came before the first run and
    before every run that followed another stream's (its queue refilled while it waited)."""

    runs: tuple[float, ...]
    warmup: int
    iters: int

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def to_dict(self) -> dict:
        return {"img_s": self.median, "runs": list(self.runs), "warmup_batches": self.warmup,
                "timed_batches_per_run": self.iters}


def measure(streams: dict[str, Iterator[int]], *, warmup: Union[int, dict[str, int]],
            iters: Union[int, dict[str, int]], runs: int, sync: Callable[[], None] = lambda: None,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, Measurement]:
    """Time each stream `runs` times, `iters` batches per run, the streams in alternation; see the module doc.

    streams: name -> iterator yielding the number of images of each batch it has processed.
    warmup: untimed batches before a stream's runs, one number for all or one per stream (a loader's own
        prefetch queue sets how many it needs).
    iters: timed batches per run, one number for all or one per stream (a loader whose batches arrive in
        bursts needs whole bursts).
    sync: waits for queued device work (torch.cuda.synchronize on the GPU); called before each clock read, so
        a run's time includes the kernels its batches launched and not those of the batch before.
    """
    return measure_clocks(streams, warmup=warmup, iters=iters, runs=runs, sync=sync, clocks=(clock,))[0]


def measure_clocks(streams: dict[str, Iterator[int]], *, warmup: Union[int, dict[str, int]],
                   iters: Union[int, dict[str, int]], runs: int, sync: Callable[[], None] = lambda: None,
                   clocks: Sequence[Callable[[], float]]) -> list[dict[str, Measurement]]:
    """`measure` with several clocks read around the same runs: one result per clock, in their order."""
    warmups = warmup if isinstance(warmup, dict) else dict.fromkeys(streams, warmup)
    timed = iters if isinstance(iters, dict) else dict.fromkeys(streams, iters)
    rates: list[dict[str, list[float]]] = [{name: [] for name in streams} for _ in clocks]
    previous = None
    for run in range(runs):
        for name, batches in streams.items():
            if name != previous:
                for _ in range(warmups[name]):
                    next(batches)
                sync()
                previous = name
            with nvtx_range(f"{name} timed run {run + 1}/{runs}"):
                images = 0
                starts = [clock() for clock in clocks]
                for _ in range(timed[name]):
                    images += next(batches)
                sync()
                ends = [clock() for clock in clocks]
                for per_clock, start, end in zip(rates, starts, ends):
                    per_clock[name].append(images / (end - start))
    return [{name: Measurement(tuple(r), warmups[name], timed[name]) for name, r in per_clock.items()}
            for per_clock in rates]


def epoch_after_epoch(loader):
    """The loader's batches, epoch after epoch: an epoch that ends normally continues without a rebuild."""
    while True:
        yield from loader


def batch_sizes(loader) -> Iterator[int]:
    """A loader of (images, labels) batches as a stream for `measure`: each batch's size, epoch after epoch."""
    return (len(labels) for _, labels in epoch_after_epoch(loader))


def measure_wall_and_cpu(streams: dict[str, Iterator[int]], *, warmup: int, iters: int, runs: int,
                         sync: Callable[[], None] = lambda: None) -> dict[str, dict]:
    """`measure` with the wall clock and the process's CPU clock (all threads: what one image costs one core,
    which other processes on a shared machine inflate far less than wall time) read around the same runs: name ->
    the wall Measurement's dict plus ms_per_image, cpu_ms_per_image and the CPU runs (images per CPU second).
    sync: as in `measure`."""
    wall, cpu = measure_clocks(streams, warmup=warmup, iters=iters, runs=runs, sync=sync,
                               clocks=(time.perf_counter, time.process_time))
    return {name: {**wall[name].to_dict(), "ms_per_image": 1e3 / wall[name].median,
                   "cpu_ms_per_image": 1e3 / cpu[name].median, "cpu_runs_img_per_cpu_s": list(cpu[name].runs)}
            for name in streams}


def batches_consumed(streams: int, *, warmup: int, iters: int, runs: int) -> int:
    """Batches `measure` takes from each of `streams` alternating streams (one stream warms up once)."""
    return (warmup * (runs if streams > 1 else 1)) + runs * iters


def nvtx_range(name: str):
    """An NVTX range (visible in Nsight Systems) when CUDA is there, else nothing."""
    return torch.cuda.nvtx.range(name) if torch.cuda.is_available() else contextlib.nullcontext()


def device_sync(device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "gpu" else (lambda: None)


def add_timing_arguments(p: argparse.ArgumentParser, *, iters: int = 20, runs: int = 5, warmup: Optional[int] = 5,
                         threads: Optional[int] = 2, threads_help: str = "DALI threads") -> None:
    """The options every micro-benchmark script shares: batch, threads, `measure`'s counts, --json.

    warmup None: no --warmup (the script derives it from its loaders' queues); threads None: the usable cores."""
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-threads", type=int, default=threads,
                   help=f"{threads_help} (default{': usable cores' if threads is None else ' %(default)s'})")
    p.add_argument("--iters", type=int, default=iters, help="batches per timed run (default %(default)s)")
    p.add_argument("--runs", type=int, default=runs, help="timed runs, the median reported (default %(default)s)")
    if warmup is not None:
        p.add_argument("--warmup", type=int, default=warmup,
                       help="untimed batches before each run (default %(default)s)")
    p.add_argument("--json", help="write every figure here")


class RunRecord:
    """What a benchmark's report says about its run: how long it took, on what, and how loaded the machine was
    (the load average at the start and at the end; other jobs skew every figure). Start it first."""

    def __init__(self):
        self.started, self.load_start = time.perf_counter(), os.getloadavg()

    def facts(self) -> dict:
        return {"seconds": round(time.perf_counter() - self.started, 1), "platform": platform.platform(),
                "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "versions": versions(),
                "load_average": {"start": list(self.load_start), "end": list(os.getloadavg())}}


def versions() -> dict:
    """The versions of what a figure depends on: Python, this package, the libraries, CUDA."""
    return {"python": platform.python_version(), "dali_has": _installed_version("dali-has"),
            "nvidia_dali": nvidia.dali.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": np.__version__, "pillow": PIL.__version__, "tqdm": tqdm_version, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None}


def _installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # run from a source checkout on PYTHONPATH
        return "not installed (source checkout)"


def cpu_model() -> Optional[str]:
    """The CPU's model name (/proc/cpuinfo); what `platform` says elsewhere."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or None


def runs_and_load(report: dict) -> str:
    """"median of R runs x I batches; load average a -> b" for a micro-benchmark's report (its settings and
    RunRecord facts)."""
    s, load = report["settings"], report["load_average"]
    return (f"median of {s['runs']} runs x {s['iters']} batches; load average {load['start'][0]:.2f} -> "
            f"{load['end'][0]:.2f}")


def write_json(path: str | None, report: dict) -> None:
    """The report as JSON at `path` (a script's --json); nothing when it is None. Written whole or not at all (a
    temporary file renamed), so a process killed while writing leaves the previous report."""
    if path:
        with written_whole(Path(path)) as file:
            file.write(json.dumps(report, indent=2).encode())
