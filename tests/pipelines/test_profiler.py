"""InputProfiler: exact numbers on fake clocks, verdicts on real slow loaders and slow steps, warm-up, early
break, several passes, exceptions, references, sample counting, the CUDA-event logic on a simulated GPU (and on a
real one, `gpu`-marked), and the overhead benchmark's command."""
from __future__ import annotations

import gc
import json
import queue
import threading
import time
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import InputProfiler, make_loader
from pipelines.profiler import MAX_PENDING_CYCLES, CpuClock, CudaEvents, batch_samples

BATCH = 4


def batch(n: int = BATCH):
    return torch.zeros(n, 3), torch.zeros(n, dtype=torch.int64)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def timed_loader(clock: FakeClock, waits: list[float]):
    """Batches that each take `waits[i]` fake seconds to arrive."""
    for wait in waits:
        clock.now += wait
        yield batch()


def fake_profiler(clock: FakeClock, warmup: int = 0, **kwargs) -> InputProfiler:
    return InputProfiler(warmup=warmup, timing=CpuClock(clock), **kwargs)


# ---- what is measured, exactly -------------------------------------------------------------------------------

def test_exact_numbers_on_a_fake_clock_with_the_warm_up_left_out():
    clock = FakeClock()
    profiler = fake_profiler(clock, warmup=2)
    for _ in profiler.wrap(timed_loader(clock, [50, 40] + [3] * 8)):  # slow first batches: warm-up only
        clock.now += 1  # the step
    s = profiler.summary()
    assert (s["batches"], s["samples"], s["warmup_batches"]) == (8, 8 * BATCH, 2)
    assert (s["wait_s"], s["wall_s"], s["wait_fraction"]) == (24.0, 32.0, 0.75)
    assert s["img_s"] == 8 * BATCH / 32.0
    assert s["timing"] == "cpu"
    assert s["verdict"].startswith("input-bound: the loop waited for its input 75.0 % of the time")
    report = profiler.report()
    assert "8 batches, 32 samples" in report and "75.0 %" in report and "host clock" in report
    assert "up to 4.00x faster" in report and "more CPU threads or workers" in report


def test_the_threshold_decides_the_verdict():
    def run(wait, step, **kwargs):
        clock = FakeClock()
        profiler = fake_profiler(clock, **kwargs)
        for _ in profiler.wrap(timed_loader(clock, [wait] * 5)):
            clock.now += step
        return profiler.summary()

    assert run(1, 9)["verdict"].startswith("compute-bound")  # 10 %: not above the default 10 %
    assert run(1.5, 8.5)["verdict"].startswith("input-bound")  # 15 %
    assert run(1.5, 8.5, input_bound_above=0.2)["verdict"].startswith("compute-bound")


def test_break_leaves_out_the_unfinished_batch_and_passes_accumulate():
    class Loader:
        """An iterable whose iter() takes 7 fake seconds (a DataLoader starting its workers)."""

        def __iter__(self):
            clock.now += 7
            return timed_loader(clock, [2] * 10)

    clock = FakeClock()
    profiler = fake_profiler(clock, warmup=2)
    for i, _ in enumerate(profiler.wrap(Loader())):
        clock.now += 1
        if i == 4:
            break  # batches 0, 1: warm-up; 2, 3: measured; 4: its step's end is never seen
    first = profiler.summary()
    assert (first["batches"], first["wait_s"], first["wall_s"]) == (2, 4.0, 6.0)

    for step, _ in enumerate(profiler.wrap(Loader())):  # the next epoch; the trainer's way to stop at 3 steps
        if step >= 3:
            break
        clock.now += 1
    s = profiler.summary()
    # The new pass: no warm-up again, its first wait includes iter()'s 7 s; 3 full cycles.
    assert (s["batches"], s["warmup_batches"]) == (5, 2)
    assert (s["wait_s"], s["wall_s"]) == (4.0 + 7 + 2 * 3, 6.0 + 7 + 3 * 3)


def test_a_newer_wrap_ends_the_older_one():
    clock = FakeClock()
    profiler = fake_profiler(clock)
    older = profiler.wrap(timed_loader(clock, [1] * 5))
    next(older)
    for _ in profiler.wrap(timed_loader(clock, [1] * 3)):
        clock.now += 1
    with pytest.raises(RuntimeError, match="newer wrap"):
        next(older)
    assert profiler.summary()["batches"] == 3  # the older pass's unfinished batch is not counted


def test_the_loaders_exception_passes_through_unchanged():
    error = OSError("disk gone")

    def failing():
        yield from (batch() for _ in range(3))
        raise error

    profiler = InputProfiler(warmup=0)
    with pytest.raises(OSError) as raised:
        for _ in profiler.wrap(failing()):
            pass
    assert raised.value is error
    assert profiler.summary()["batches"] == 3


def test_nothing_measured_gives_an_empty_summary_that_says_why():
    profiler = InputProfiler()
    for _ in profiler.wrap([]):
        pass
    s = profiler.summary()
    assert (s["batches"], s["samples"], s["wall_s"], s["wait_s"]) == (0, 0, 0.0, 0.0)
    assert s["wait_fraction"] is None and s["img_s"] is None
    assert s["verdict"] == "not measured: the loop has not received a batch yet"
    assert profiler.report() == "InputProfiler: not measured: the loop has not received a batch yet."
    json.dumps(s)  # goes into metrics.jsonl as it is

    short = InputProfiler(warmup=5)
    for _ in short.wrap([batch()] * 3):
        pass
    assert short.summary()["verdict"].startswith("not measured: all 3 batches so far were warm-up (warmup=5)")


def test_bad_settings_are_named():
    for kwargs, named in [(dict(warmup=-1), "warmup=-1"), (dict(warmup=1.5), "warmup=1.5"),
                          (dict(timing="gpu"), "timing='gpu'"), (dict(input_bound_above=0.0), "input_bound_above"),
                          (dict(input_bound_above=1.0), "input_bound_above"), (dict(count=3), "count=3"),
                          (dict(input_bound_above="0.1"), "input_bound_above='0.1'")]:  # was a TypeError
        with pytest.raises(ValueError, match=named):
            InputProfiler(**kwargs)
    assert InputProfiler(warmup=np.int64(2)).warmup == 2


@pytest.mark.parametrize("count", [lambda b: -3, lambda b: "x", lambda b: 2.5])
def test_a_count_function_that_returns_no_sample_count_is_named(count):
    """-3 gave negative samples and img/s; "x" a TypeError from inside the profiler."""
    profiler = InputProfiler(warmup=0, count=count)
    with pytest.raises(ValueError, match="count returned"):
        for _ in profiler.wrap([batch()] * 2):
            pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where there is no CUDA")
def test_cuda_timing_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="timing='cuda' needs a CUDA device"):
        InputProfiler(timing="cuda")


def test_auto_timing_uses_the_host_clock_when_cuda_is_not_initialized():
    if torch.cuda.is_initialized():
        pytest.skip("CUDA was initialized by an earlier test; 'auto' then picks CUDA events")
    profiler = InputProfiler(warmup=0)
    assert profiler.summary()["timing"] is None  # decided at the first batch
    for _ in profiler.wrap([batch()] * 2):
        pass
    assert profiler.summary()["timing"] == "cpu"


# ---- verdicts on real loops (sleeps; only the verdict and the ordering are asserted) ------------------------

def prefetching_loader(batches: int, seconds_per_batch: float):
    """Like a DataLoader with one worker: a thread makes batches (sleeping each time) into a queue of 2."""
    ready: queue.Queue = queue.Queue(maxsize=2)

    def work():
        for _ in range(batches):
            time.sleep(seconds_per_batch)
            ready.put(batch())
        ready.put(None)

    threading.Thread(target=work, daemon=True).start()
    while (item := ready.get()) is not None:
        yield item


def profile_sleeping_loop(load_s: float, step_s: float) -> dict:
    profiler = InputProfiler(warmup=3, timing="cpu")
    for _ in profiler.wrap(prefetching_loader(25, load_s)):
        time.sleep(step_s)
    return profiler.summary()


def test_a_slow_loader_is_input_bound_and_a_slow_step_compute_bound():
    slow_loader = profile_sleeping_loop(load_s=0.020, step_s=0.002)  # expected wait fraction about 0.9
    slow_step = profile_sleeping_loop(load_s=0.002, step_s=0.020)  # expected about 0: the queue is full
    assert slow_loader["verdict"].startswith("input-bound"), slow_loader
    assert slow_step["verdict"].startswith("compute-bound"), slow_step
    assert slow_loader["wait_fraction"] > slow_step["wait_fraction"]
    assert slow_loader["batches"] == slow_step["batches"] == 22
    assert slow_loader["samples"] == 22 * BATCH


# ---- what is counted -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("item, expected", [
    (torch.zeros(8, 3), 8),
    ((torch.zeros(5, 3), torch.zeros(5)), 5),
    ([np.zeros((6, 2)), np.zeros(6)], 6),
    ({"images": torch.zeros(7, 1), "labels": torch.zeros(7)}, 7),
    ([{"images": torch.zeros(3, 1), "labels": torch.zeros(3)}, {"images": torch.zeros(4, 1)}], 7),  # DALI, 2 GPUs
    ({"id": "a", "weight": torch.tensor(1.0), "x": ([torch.zeros(9, 2)],)}, 9),  # first tensor with a dimension
])
def test_samples_are_the_leading_dimension_of_the_first_tensor(item, expected):
    assert batch_samples(item) == expected


def test_an_uncountable_batch_is_named_at_the_first_batch_and_count_can_say_how():
    with pytest.raises(TypeError, match="batch of type list.*pass count="):
        for _ in InputProfiler().wrap([["a", "b"]]):
            pass
    profiler = InputProfiler(warmup=0, count=len)
    for _ in profiler.wrap([["a", "b", "c"]] * 2):
        pass
    assert profiler.summary()["samples"] == 6
    assert "counted by your count function" in profiler.report()


# ---- references: the profiler never keeps a loader alive -----------------------------------------------------

def test_the_profiler_keeps_no_reference_to_the_iterable():
    class Loader:
        def __iter__(self):
            return iter([batch()] * 5)

    profiler = InputProfiler(warmup=0)
    for ended_by in ("exhaustion", "break"):
        loader = Loader()
        alive = weakref.ref(loader)
        for i, _ in enumerate(profiler.wrap(loader)):
            if ended_by == "break" and i == 1:
                break
        del loader
        gc.collect()
        assert alive() is None, ended_by
    assert profiler.summary()["batches"] == 5 + 1


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp("profiler_jpegs")
    rng = np.random.default_rng(0)
    for i in range(7):
        path = root / f"class{i % 2}" / f"{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
    return root


def test_profiling_our_loader_counts_every_sample_and_releases_the_pipeline(jpegs):
    loader = make_loader(jpegs, train=True, batch_size=2, crop=8, num_threads=1, seed=0)
    profiler = InputProfiler(warmup=0)
    for images, labels in profiler.wrap(loader):  # noqa: B007 (deleted below: no batch may keep the pipeline)
        pass
    assert profiler.summary()["samples"] == loader.num_samples == 7
    assert profiler.summary()["batches"] == len(loader) == 4
    for i, _ in enumerate(profiler.wrap(loader)):  # a second epoch, abandoned
        if i == 1:
            break
    pipeline = weakref.ref(loader.pipeline)
    del loader, images, labels, _
    gc.collect()
    assert pipeline() is None
    assert profiler.summary()["batches"] == 4 + 1


# ---- CUDA events: the logic on a simulated GPU ---------------------------------------------------------------

class FakeGPU:
    """One CUDA stream in simulation. `now` is the host clock; work runs in queue order and ends at busy_until."""

    def __init__(self):
        self.now = 0.0
        self.busy_until = 0.0

    def launch(self, seconds: float) -> None:
        self.busy_until = max(self.busy_until, self.now) + seconds

    def synchronize(self) -> None:
        self.now = max(self.now, self.busy_until)

    def event(self) -> FakeEvent:
        return FakeEvent(self)


class FakeEvent:
    """The part of torch.cuda.Event the profiler uses; its time is when the GPU reaches it."""

    def __init__(self, gpu: FakeGPU):
        self.gpu = gpu
        self.time = None

    def record(self) -> None:
        self.gpu.launch(0.0)
        self.time = self.gpu.busy_until

    def query(self) -> bool:
        return self.gpu.now >= self.time

    def synchronize(self) -> None:
        self.gpu.now = max(self.gpu.now, self.time)

    def elapsed_time(self, end: FakeEvent) -> float:
        return 1000.0 * (end.time - self.time)


def simulate(timing: str, *, loader_syncs: bool, load_s: float, gpu_step_s: float, batches: int = 12,
             cpu_step_s: float = 0.001) -> tuple[FakeGPU, InputProfiler]:
    gpu = FakeGPU()
    timer = CudaEvents(new_event=gpu.event) if timing == "cuda" else CpuClock(lambda: gpu.now)
    profiler = InputProfiler(warmup=2, timing=timer)

    def loader():
        for _ in range(batches):
            if loader_syncs:  # e.g. a copy or .item() on the training stream: waits for the step before
                gpu.synchronize()
            gpu.now += load_s
            yield batch()

    for _ in profiler.wrap(loader()):
        gpu.now += cpu_step_s  # the host queues the step's kernels...
        gpu.launch(gpu_step_s)  # ...which the GPU runs after them
    return gpu, profiler


def test_cuda_events_see_a_compute_bound_step_that_the_host_clock_books_as_input_wait():
    # 20 ms of GPU work per step; the loader itself takes 0.1 ms but waits for the GPU first.
    _, host = simulate("cpu", loader_syncs=True, load_s=0.0001, gpu_step_s=0.020)
    _, events = simulate("cuda", loader_syncs=True, load_s=0.0001, gpu_step_s=0.020)
    assert host.summary()["verdict"].startswith("input-bound")  # the misreading the CUDA mode exists for
    s = events.summary()
    assert s["timing"] == "cuda" and s["batches"] == 10
    # Per cycle on the GPU: 0.1 ms of handing over (counted as wait), then 1 ms idle while the host queues the
    # step, then the step's 20 ms.
    assert s["wait_s"] == pytest.approx(10 * 0.0001)
    assert s["wall_s"] == pytest.approx(10 * 0.0211)
    assert s["verdict"].startswith("compute-bound")
    assert "CUDA events on the current stream" in events.report()


def test_cuda_events_see_a_slow_loader_as_input_bound():
    _, events = simulate("cuda", loader_syncs=False, load_s=0.020, gpu_step_s=0.002)
    s = events.summary()
    # Per cycle: the GPU finishes the previous step 2 ms after the request and idles until the batch is there at
    # 20 ms (wait 18 ms); the host queues the step in 1 ms, the GPU runs it in 2 ms: 21 ms from request to request.
    assert s["wait_s"] == pytest.approx(10 * 0.018)
    assert s["wall_s"] == pytest.approx(10 * 0.021)
    assert s["verdict"].startswith("input-bound")


def test_cuda_events_never_make_the_loop_wait_and_pending_ones_are_bounded():
    # The GPU falls further behind every step; the profiler must not synchronize during the loop.
    gpu, profiler = simulate("cuda", loader_syncs=False, load_s=0.0001, gpu_step_s=0.020, batches=20)
    assert gpu.now == pytest.approx(20 * 0.0011)  # the host only ever spent the loop's own time
    assert gpu.busy_until > 20 * 0.019
    s = profiler.summary()  # now it waits for the GPU
    assert s["wall_s"] == pytest.approx(18 * 0.020) and s["verdict"].startswith("compute-bound")

    gpu, profiler = simulate("cuda", loader_syncs=False, load_s=0.0001, gpu_step_s=0.020,
                             batches=MAX_PENDING_CYCLES + 50)
    assert len(profiler._pending) <= MAX_PENDING_CYCLES
    assert profiler.summary()["batches"] == MAX_PENDING_CYCLES + 48


# ---- CUDA events on a real GPU -------------------------------------------------------------------------------

@pytest.mark.gpu
def test_cuda_timing_on_a_real_gpu():
    torch.cuda.init()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(10_000_000)
    end.record()
    end.synchronize()
    cycles_per_ms = 10_000_000 / start.elapsed_time(end)

    def gpu_step(ms: float) -> None:
        torch.cuda._sleep(int(ms * cycles_per_ms))

    def loader(host_ms: float, syncs: bool, batches: int = 20):
        for _ in range(batches):
            if syncs:
                torch.cuda.synchronize()
            time.sleep(host_ms / 1000)
            yield torch.zeros(BATCH, 3, device="cuda")

    def profile(timing: str, host_ms: float, syncs: bool, step_ms: float) -> dict:
        profiler = InputProfiler(warmup=3, timing=timing)
        for _ in profiler.wrap(loader(host_ms, syncs)):
            gpu_step(step_ms)
        return profiler.summary()

    # A compute-bound GPU loop whose loader synchronizes: the host clock misreads it, the events do not.
    assert profile("cpu", 0.0, True, 20.0)["verdict"].startswith("input-bound")
    bound = profile("cuda", 0.0, True, 20.0)
    assert bound["verdict"].startswith("compute-bound"), bound
    assert bound["timing"] == "cuda" and bound["samples"] == 17 * BATCH
    slow = profile("auto", 20.0, False, 2.0)  # CUDA is initialized: auto picks the events
    assert slow["timing"] == "cuda"
    assert slow["verdict"].startswith("input-bound"), slow
    assert slow["wait_fraction"] > bound["wait_fraction"]
