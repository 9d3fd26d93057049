"""`InputProfiler`: does a training loop wait for its input? It wraps any iterable of batches and times the waits.

    prof = InputProfiler()
    for images, labels in prof.wrap(loader):     # our loader, a torch DataLoader, FFCV, any iterable
        ...training step...
    print(prof.report())                         # a paragraph; prof.summary() gives the numbers as a dict

What is measured. A loop alternates between waiting for its next batch (inside `next()` of the wrapped iterable)
and the step on it. A *cycle* runs from the loop asking for a batch to the loop asking for the next one, and its
wait is the part before the batch arrived. wait_fraction = sum of waits / sum of cycles: the share of the loop's
time spent waiting for input. A cycle counts once the loop asks for the next batch or the iterable ends; the
batch a `for` breaks out of has no observable end and is left out, as are the first `warmup` batches (one-time
costs: cudnn autotuning, allocator growth, the loader's start and its prefetch queue, filled before the first
`next()`). The first wait of every `wrap()` includes `iter()` of the iterable (a DataLoader starts its workers
there), a real cost of each epoch. Samples are counted by `batch_samples` (the leading dimension of the first
tensor of each batch) unless `count=` says otherwise.

Timing. timing="cpu": the host clock around each `next()`. On a GPU that is not the whole story: a step returns
as soon as its kernels are queued, so a loader that synchronizes with the GPU, or whose copies wait behind the
step on the training stream, spends the *previous step's* GPU time inside `next()`, and the host clock books it
as input wait; conversely a DALI GPU loader can return at once while the GPU still waits for its batch.
timing="cuda": a CUDA event is recorded on the current stream when the loop asks for a batch and another when it
has it; the wait is the GPU's time between the two, from finishing the work queued before the request to
reaching the point where the next step's work can start. Work the GPU still does after the CPU moved on counts
as step; time it idles because the batch is late counts as wait. Events, not a synchronize per batch: a
synchronize would stop the CPU from queueing the next step while the GPU computes, removing the very overlap
being measured. Events are read only once the GPU has passed them (polled without blocking; `summary()` waits
for the last ones), so the profiler never stalls the loop. timing="auto" (default) picks "cuda" when torch's
CUDA is initialized at the first batch, "cpu" otherwise.

Verdict. Input-bound when wait_fraction > input_bound_above (default 0.10). A loader that always had the next
batch ready would make the loop at most 1 / (1 - wait_fraction) times faster: up to 1.11x at 10 %. Below that the
wait is mostly the cost of handing a batch over (a queue get, a copy), which even a loader that keeps up pays,
and a gain that small is within the run-to-run spread of throughput measurements; above it, the loader is worth
working on. wait_fraction f also means the loader delivers about (1 - f) of what the model could consume.

Epochs. Each `wrap()` is one pass (an epoch, or part of one); passes accumulate into the same totals, and the
warm-up applies once, to the first batches the profiler sees. For per-epoch numbers use one profiler per epoch
(as `dali-has train` does). Starting a new `wrap()` ends the previous one: resuming the older generator raises.

References. The profiler keeps numbers only. The iterable, its iterator and the current batch are held by the
generator `wrap()` returns and released when it ends or is dropped, so a DALI loader is not kept alive by a
profiler. Exceptions of the wrapped iterable propagate unchanged (the same object); the cycle they interrupt is
not counted.

Overhead, timing="cpu": 1.4 us per batch on this project's 2-core machine at load average 1.4 (1.5-2.1 us at
load 9), i.e. under 0.2 % of a 1 ms training step; `python -m train.bench.profiler_overhead --json overhead.json`
(median of 7 alternating runs of 100,000 prebuilt batches with and without wrap). timing="cuda" adds two event
records per batch; not measured yet (no GPU here): `... --timing cuda`.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from numbers import Integral, Real
from typing import Any, Optional, Union

import torch

DEFAULT_WARMUP = 10
INPUT_BOUND_ABOVE = 0.10
TIMINGS = ("auto", "cpu", "cuda")
# Unread CUDA events kept at most; a GPU rarely runs more than a few steps behind the CPU, so this is a safety
# net for memory, reached only when the events are never polled as done.
MAX_PENDING_CYCLES = 256


class CpuClock:
    """Marks are host clock readings; `clock` is injectable for tests."""

    name = "cpu"
    description = "host clock (time.perf_counter) around each next() of the loader"

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock

    def mark(self) -> float:
        return self._clock()

    def ready(self, mark: float) -> bool:
        return True

    def seconds(self, start: float, end: float) -> float:
        return end - start


class CudaEvents:
    """Marks are CUDA events recorded on the current stream. `new_event` (default: a timing torch.cuda.Event)
    is injectable, so the logic runs in tests without a GPU."""

    name = "cuda"
    description = ("CUDA events on the current stream when the loop asked for each batch and when it had it: "
                   "the wait is the GPU's time from the end of one step's queued work to the start of the next "
                   "step's, not the CPU's time inside next()")

    def __init__(self, new_event: Optional[Callable[[], Any]] = None):
        if new_event is None:
            if not torch.cuda.is_available():
                raise ValueError("timing='cuda' needs a CUDA device; use timing='cpu' (or 'auto')")
            new_event = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
        self._new_event = new_event

    def mark(self):
        event = self._new_event()
        event.record()
        return event

    def ready(self, mark) -> bool:
        return mark.query()

    def seconds(self, start, end) -> float:
        end.synchronize()
        return start.elapsed_time(end) / 1000.0


Timer = Union[CpuClock, CudaEvents]


def batch_samples(batch) -> int:
    """Samples in a batch: the leading dimension of its first tensor (anything with a `.shape` of at least one
    dimension: torch, numpy, ...), searched depth-first through tuples, lists and dicts (in their order). A list
    or tuple of dicts, as DALI's iterators return (one dict per pipeline), counts the sum over the dicts."""
    n = _leading_dim(batch)
    if n is None:
        raise TypeError(f"InputProfiler cannot count the samples of a batch of type {type(batch).__name__}: it "
                        "looks for the leading dimension of the first tensor in tuples, lists and dicts; pass "
                        "count=<function of a batch returning its number of samples> to InputProfiler")
    return n


def _leading_dim(batch) -> Optional[int]:
    shape = getattr(batch, "shape", None)
    if shape is not None and not callable(shape):
        return int(shape[0]) if len(shape) else None
    if isinstance(batch, dict):
        parts = batch.values()
    elif isinstance(batch, (list, tuple)):
        if batch and isinstance(batch[0], dict):
            counts = [_leading_dim(part) for part in batch]
            return None if None in counts else sum(counts)
        parts = batch
    else:
        return None
    for part in parts:
        n = _leading_dim(part)
        if n is not None:
            return n
    return None


class InputProfiler:
    """Measures how much of a training loop's time is spent waiting for the next batch; see the module doc.

    warmup: batches left out at the start (once per profiler, not per wrap).
    timing: "auto" (CUDA events when torch's CUDA is initialized at the first batch, else the host clock),
        "cpu", "cuda", or a CpuClock / CudaEvents instance (tests inject fake clocks and events this way).
    input_bound_above: the wait_fraction above which the verdict is "input-bound".
    count: samples of a batch (default `batch_samples`).
    """

    def __init__(self, warmup: int = DEFAULT_WARMUP, timing: Union[str, Timer] = "auto",
                 input_bound_above: float = INPUT_BOUND_ABOVE, count: Callable[[Any], int] = batch_samples):
        if not isinstance(warmup, Integral) or isinstance(warmup, bool) or warmup < 0:
            raise ValueError(f"warmup={warmup!r} must be an integer >= 0 (batches left out at the start)")
        if isinstance(timing, str):
            if timing not in TIMINGS:
                raise ValueError(f"timing={timing!r} must be one of {TIMINGS}")
            timer = {"auto": None, "cpu": CpuClock, "cuda": CudaEvents}[timing]
            self._timer: Optional[Timer] = timer() if timer else None
        elif isinstance(timing, (CpuClock, CudaEvents)):
            self._timer = timing
        else:
            raise ValueError(f"timing={timing!r} must be one of {TIMINGS} or a CpuClock / CudaEvents")
        if isinstance(input_bound_above, bool) or not isinstance(input_bound_above, Real) or not (
                0.0 < input_bound_above < 1.0):
            raise ValueError(f"input_bound_above={input_bound_above!r} must be a fraction between 0 and 1")
        if not callable(count):
            raise ValueError(f"count={count!r} must be a function of a batch returning its number of samples")
        self.warmup = int(warmup)
        self.input_bound_above = input_bound_above
        self._count = count
        self._custom_count = count is not batch_samples
        self._pass = 0  # id of the newest wrap(); older ones stop
        self._seen = 0  # batches delivered, warm-up included
        # Completed cycles whose marks are not read yet: (asked, got, samples, next asked).
        self._pending: deque = deque()
        self._batches = 0
        self._samples = 0
        self._wall = 0.0
        self._wait = 0.0

    def wrap(self, iterable: Iterable) -> Iterator:
        """The batches of `iterable`, unchanged, with the wait for each one timed. Ends any earlier wrap()."""
        self._pass += 1
        return self._profiled(iterable, self._pass)

    def _profiled(self, iterable: Iterable, pass_id: int) -> Iterator:
        iterator = None
        cycle = None  # (asked, got, samples) of the batch the loop is working on, if measured
        while True:
            if pass_id != self._pass:
                raise RuntimeError("a newer wrap() of this InputProfiler started; this one has ended")
            timer = self._timer or self._choose_timer()
            asked = timer.mark()
            if cycle is not None:  # the loop is back for more: the previous batch's step is over
                self._pending.append((*cycle, asked))
                self._read_done_cycles()
            try:
                if iterator is None:
                    iterator = iter(iterable)
                batch = next(iterator)
            except StopIteration:
                return
            got = timer.mark()
            self._seen += 1
            samples = self._count(batch)
            if isinstance(samples, bool) or not isinstance(samples, Integral) or samples < 0:
                raise ValueError(f"count returned {samples!r} for a batch; it must return the batch's number of "
                                 "samples, a whole number >= 0")
            cycle = (asked, got, samples) if self._seen > self.warmup else None
            yield batch

    def _choose_timer(self) -> Timer:
        self._timer = CudaEvents() if torch.cuda.is_initialized() else CpuClock()
        return self._timer

    def _read_done_cycles(self, wait_for_all: bool = False) -> None:
        pending, timer = self._pending, self._timer
        while pending and (wait_for_all or len(pending) > MAX_PENDING_CYCLES or timer.ready(pending[0][3])):
            asked, got, samples, next_asked = pending.popleft()
            self._wait += timer.seconds(asked, got)
            self._wall += timer.seconds(asked, next_asked)
            self._batches += 1
            self._samples += samples

    def summary(self) -> dict:
        """The measured numbers so far: batches and samples measured, wall_s (sum of their cycles), wait_s,
        wait_fraction and img_s (None when nothing was measured), verdict, timing ("cpu"/"cuda"; None before
        the first batch), warmup_batches (left out)."""
        self._read_done_cycles(wait_for_all=True)
        wall, wait = self._wall, self._wait
        measured = self._batches > 0
        fraction = (wait / wall if wall > 0 else 0.0) if measured else None
        return {"batches": self._batches, "samples": self._samples, "wall_s": wall, "wait_s": wait,
                "wait_fraction": fraction, "img_s": self._samples / wall if measured and wall > 0 else None,
                "verdict": self._verdict(fraction), "timing": self._timer.name if self._timer else None,
                "warmup_batches": min(self._seen, self.warmup)}

    def _verdict(self, fraction: Optional[float]) -> str:
        if fraction is None:
            if self._seen == 0:
                return "not measured: the loop has not received a batch yet"
            return (f"not measured: all {self._seen} batches so far were warm-up (warmup={self.warmup}); "
                    "profile a longer loop or lower warmup")
        if fraction > self.input_bound_above:
            return (f"input-bound: the loop waited for its input {100 * fraction:.1f} % of the time; the loader "
                    f"delivers about {100 * (1 - fraction):.0f} % of what the model could consume")
        return (f"compute-bound: the loop waited for its input only {100 * fraction:.1f} % of the time; the "
                f"model step is the bottleneck")

    def line(self) -> str:
        """One log line: the verdict, then batches, img/s and the clock used."""
        s = self.summary()
        if s["wait_fraction"] is None:
            return s["verdict"]
        rate = f"{s['img_s']:.1f} img/s" if s["img_s"] is not None else "no measurable time"
        return (f"{s['verdict']} ({s['wait_s']:.2f} s of {s['wall_s']:.2f} s over {s['batches']} batches, "
                f"{rate}, {s['timing']} timing)")

    def report(self) -> str:
        """One paragraph: what was measured and how, the numbers, the verdict and what to do about it."""
        s = self.summary()
        if s["wait_fraction"] is None:
            return f"InputProfiler: {s['verdict']}."
        counted = ("counted by your count function" if self._custom_count
                   else "the leading dimension of each batch's first tensor")
        f = s["wait_fraction"]
        text = (f"InputProfiler: {s['batches']} batches, {s['samples']} samples ({counted}) measured after "
                f"{s['warmup_batches']} warm-up batches. The loop ran {s['wall_s']:.2f} s and waited "
                f"{s['wait_s']:.2f} s of it for its next batch ({100 * f:.1f} %)")
        if s["img_s"] is not None:
            text += f", {s['img_s']:.1f} samples/s"
        text += f". Timing: {self._timer.description}. Verdict: {s['verdict']} (input-bound above " \
                f"{100 * self.input_bound_above:.0f} %). "
        if f > self.input_bound_above:
            gain = f"up to {1 / (1 - f):.2f}x faster" if f < 1 else "much faster"
            text += (f"A loader that kept up would make this loop {gain}: give it more "
                     "CPU threads or workers, or decode and augment on the GPU (DALI: make_loader(device='gpu'), "
                     "hw_decoder_load); a faster GPU or a lighter model will not help.")
        else:
            text += (f"A faster loader would gain at most {100 * f / (1 - f):.1f} %: speed up the model step "
                     "instead (mixed precision, channels_last, a larger batch, a faster GPU).")
        return text
