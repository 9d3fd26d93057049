"""`dali-has gpu-check`: everything that needs a GPU, verified in one call, summarized in one JSON file.

Steps, each in its own subprocess with a time limit taken from one overall budget (so one hung or crashing step
cannot take the others down, and the whole check fits one call of a lent machine):

  environment  card, driver, CUDA/torch/DALI versions; builds and loads the fused plugin and says whether its
               CUDA kernel can run on this driver;
  kernel tests `pytest -m "gpu and untried_kernel"`: the tests of CUDA kernels that have not run on a GPU yet,
               first and in a process of their own (a kernel that faults takes its process's CUDA context down);
  gpu tests    `pytest -m "gpu and not untried_kernel"` (each test step's junit XML parsed into pass/fail/skip
               counts and the failing test names);
  stages       `python -m train.bench.pipeline_stages --device gpu`: img/s of the pipeline cut after each stage;
  bench        `dali-has bench --device gpu` for AlexNet-GAP (the loader's limit, every data form; shortened);
  train        a short GPU training of each architecture with the DALI loader and HaS;
  memory       device and host memory one GPU training pipeline holds, per DALI thread count;
  compile      `dali-has bench --device gpu --compile` for ResNet-50 (eager vs torch.compile step).

Every step's output goes to OUT/<step>.log; OUT/gpu_check.json holds the summary and every figure, rewritten
(whole, by rename) after every step, so a check cut off by its caller keeps what it finished. A step's time limit
ends its whole process group (the bench's memory measurements run in subprocesses of their own). The trainings'
checkpoints are deleted once their sizes are recorded: ~470 MB would keep OUT from coming back from a lent
machine. Without a CUDA device it stops at once with a message saying so.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

from pipelines.own_files import written_whole
from pipelines.settings import default_num_threads
from train.bench.memory import device_free_mb, process_tree_mb
from train.bench.timing import SEED, versions
from train.checkpoint import METRICS

REPO = Path(__file__).resolve().parents[2]
SUMMARY = "gpu_check.json"
# Every step with room to spare on an H200 with 16 cores (they took 511 s there, the compiled bench cut short).
# A machine lent for a limited time can pass less: the steps run in order of importance.
DEFAULT_BUDGET_S = 900
MEMORY_THREADS = (1, 4, 8, 16)
FUSED_RESIZE_TESTS = "test_resize_mirror_normalize_gpu"  # the module of the fused resize operator's GPU tests


class NoGPUError(RuntimeError):
    """There is no CUDA device to check."""


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]
    limit_s: int  # at most this long, and never past the overall budget
    json_out: str | None = None  # file in OUT the step writes its figures to


def plan(out: Path, data: Path) -> list[Step]:
    """The steps, in order; `data` is an image folder DIR/<class>/<image> for the short trainings."""
    cli = [sys.executable, "-m", "train.cli"]

    def tests(name: str, markers: str, limit_s: int) -> Step:
        # -v: one line per test as it finishes, so a step cut off by its time limit still says what passed
        return Step(name, [sys.executable, "-m", "pytest", "-m", markers, "-v", "-rfE", "-p", "no:cacheprovider",
                           f"--junitxml={out / (name + '.xml')}", str(REPO / "tests")], limit_s)

    def bench(arch: str, *options: str, limit_s: int = 180) -> Step:
        name = "_".join(["bench", arch] + (["compile"] if "--compile" in options else []))
        return Step(name, cli + ["bench", "--device", "gpu", "--arch", arch, *options, "--no-progress",
                                 "--json", str(out / f"{name}.json")], limit_s, f"{name}.json")

    # In order of what matters most when the budget runs out: correctness, where the GPU pipeline tops out, the
    # loader's speed on every data form, training, memory, then the compiled model step. The benches are short
    # runs of batch 256 (on an H200 with 16 cores each took 137-171 s before they measured each loader's memory).
    steps = [
        Step("environment", [sys.executable, "-m", "train.bench.gpu_check", "environment",
                             str(out / "environment.json")], 60, "environment.json"),
        # The never-run kernels' few tests first: in the one pytest process they came last (a fault would take
        # the CUDA context, and every test after it, down), after ~100 slower tests, past the step's time limit.
        tests("kernel_tests", "gpu and untried_kernel", 120),
        tests("gpu_tests", "gpu and not untried_kernel", 240),
        # Where the GPU pipeline tops out: read alone, + decode, + resize/normalize/HaS (three operators, the
        # fused CUDA kernel, the three with DALI's full operator concurrency, or split over two pipelines: one
        # pipeline's serial host work vs the card's limits), per data form; what the loader speeds below do not
        # say. It writes its JSON after each data form, so a time-out keeps what it finished. 80 batches a run:
        # ~0.6 s at 35,000 img/s. Without no_has: the bench below measures what HaS costs on the GPU.
        Step("stages", [sys.executable, "-m", "train.bench.pipeline_stages", "--device", "gpu", "--batch-size", "256",
                        "--num-threads", str(default_num_threads()), "--hw-decoder-load", "0.9", "--iters", "80",
                        "--runs", "3", "--skip", "no_has", "--json", str(out / "stages.json")], 180, "stages.json"),
        # AlexNet-GAP's step is fast enough to show the loader's limit; its bench times the data comparison
        # (originals, prepared JPEGs, decoded pixels). The hardware decoder's share at 0.9 only: two H200 runs
        # swept 0.65 too and found it 8-9 % slower, and the stage benchmark now runs first.
        # 40 batches a run: at 35,000 img/s runs of 20 took 0.15 s and scattered from 22,000 to 41,000 img/s.
        bench("alexnet_gap", "--iters", "40", "--model-iters", "10", "--runs", "3", "--hw-decoder-load", "0.9",
              limit_s=240),
    ]
    for arch in ("alexnet_gap", "resnet50"):
        steps.append(Step(f"train_{arch}", cli + ["train", "--data", str(data), "--out", str(out / f"run_{arch}"),
                                                  "--arch", arch, "--device", "gpu", "--epochs", "2",
                                                  "--batch-size", "128", "--max-steps-per-epoch", "20",
                                                  "--val-data", str(data)], 60))
    steps.append(Step("memory", [sys.executable, "-m", "train.bench.gpu_check", "memory", str(out / "memory.json"),
                                 str(data)], 60, "memory.json"))
    # ResNet-50's step eager and under torch.compile, end to end compiled; on the originals only (--data: no
    # prepared copies, the AlexNet-GAP bench compared them). With the prepared copies it took 171 s on an H200.
    steps.append(bench("resnet50", "--compile", "--data", str(data), "--iters", "10", "--model-iters", "20",
                       "--runs", "3", "--hw-decoder-load", "0.9", limit_s=240))
    return steps


def run_check(out: str | os.PathLike, budget_s: float = DEFAULT_BUDGET_S) -> dict:
    """Run every step within `budget_s` seconds; write and return the summary. Raises NoGPUError without CUDA."""
    import torch

    if not torch.cuda.is_available():
        raise NoGPUError("gpu-check needs a CUDA GPU, and none is visible here (torch.cuda.is_available() is "
                         "False); run it on a machine with an NVIDIA GPU and driver")
    from train.bench.data import bench_jpegs

    out = Path(out).resolve()  # the steps run in the repository's folder: a relative OUT split the results
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    data = bench_jpegs()
    results = {}
    for step in plan(out, data):
        step, note = with_what_the_tests_allow(step, out)
        left = budget_s - (time.monotonic() - start)
        results[step.name] = _run_step(step, out, min(step.limit_s, left)) if left > 5 else {"status": "skipped",
                                                                                             "why": "budget spent"}
        if note:
            results[step.name]["note"] = note
        if step.name.startswith("train_"):
            results[step.name]["checkpoint_bytes"] = _drop_checkpoints(out / f"run_{step.name[len('train_'):]}")
        print(f"gpu-check: {step.name}: {results[step.name]['status']}{f' ({note})' if note else ''}", flush=True)
        summary = summarize(out, results, time.monotonic() - start, budget_s)
        with written_whole(out / SUMMARY) as file:
            file.write((json.dumps(summary, indent=1) + "\n").encode())
    return summary


def _drop_checkpoints(run: Path) -> dict[str, int]:
    """Delete a training step's checkpoints (the metrics stay), returning their sizes in bytes."""
    sizes = {}
    for checkpoint in sorted(run.glob("*.pt")):
        sizes[checkpoint.name] = checkpoint.stat().st_size
        checkpoint.unlink()
    return sizes


def with_what_the_tests_allow(step: Step, out: Path) -> tuple[Step, str | None]:
    """`step`, or for the stage benchmark without its `fused` graph where the kernel tests have not shown the fused
    resize operator's CUDA kernel passing (a kernel that faults takes the CUDA context down, and with it every
    stage timed in the same process); and a note saying so, or None."""
    if step.name != "stages" or fused_resize_kernel_passed(out / "kernel_tests.xml"):
        return step, None
    return (replace(step, argv=step.argv + ["--skip", "fused"]),
            f"fused left out: the kernel tests did not show {FUSED_RESIZE_TESTS} passing")


def fused_resize_kernel_passed(junit: Path) -> bool:
    """Whether pytest's junit XML holds passed tests of FUSED_RESIZE_TESTS and no failed one."""
    outcomes = [outcome for test, outcome in (junit_outcomes(junit) or {}).items() if FUSED_RESIZE_TESTS in test]
    return "passed" in outcomes and not {"failure", "error"} & set(outcomes)


def _run_step(step: Step, out: Path, limit_s: float) -> dict:
    started = time.monotonic()
    # Unbuffered: a step killed at its time limit keeps in its log what it had printed.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               PYTHONUNBUFFERED="1")
    with open(out / f"{step.name}.log", "w") as log:
        # A session of its own: on a time-out the whole group is killed, the step's own subprocesses too (they
        # outlived it and overlapped the next steps' timings).
        process = subprocess.Popen(step.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=limit_s)
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code, status = None, "timeout"
    result = {"status": status, "returncode": code, "seconds": round(time.monotonic() - started, 1),
              "limit_s": round(limit_s), "log": f"{step.name}.log", "command": step.argv}
    if step.json_out and (out / step.json_out).is_file():
        result["json"] = step.json_out
    return result


def summarize(out: Path, results: dict, wall_s: float, budget_s: float) -> dict:
    """Collect every step's figures into one JSON-ready dict."""
    def load(name):
        try:
            return json.loads((out / name).read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # a step cut off while writing it: the summary still holds every other figure
            return {"unreadable": name}

    summary = {"wall_s": round(wall_s, 1), "budget_s": budget_s, "steps": results,
               "environment": load("environment.json"), "kernel_tests": junit_counts(out / "kernel_tests.xml"),
               "gpu_tests": junit_counts(out / "gpu_tests.xml"),
               "memory": load("memory.json"), "stages": load("stages.json"), "bench": {}, "train": {}}
    for arch in ("alexnet_gap", "resnet50_compile"):
        bench = load(f"bench_{arch}.json")
        if bench is not None:
            summary["bench"][arch] = bench if "unreadable" in bench else {key: bench.get(key) for key in (
                "complete", "gpu_name", "batch_size", "threads", "hw_decoder_load", "pipeline_img_s",
                "torchvision_img_s", "model_step_img_s", "end_to_end_img_s", "end_to_end_pct_of_bound", "verdict",
                "has_overhead_pct", "dali_vs_torchvision", "data_variants", "fused", "sweep",
                "model_step_eager_img_s", "compile_speedup")}
    for arch in ("alexnet_gap", "resnet50"):
        metrics = out / f"run_{arch}" / METRICS
        if metrics.is_file():  # whole lines only: a step cut off may have left a part of one
            summary["train"][arch] = [json.loads(line) for line in metrics.read_text().splitlines(keepends=True)
                                      if line.endswith("\n")]
    summary["passed"] = all(r["status"] == "ok" for r in results.values())
    return summary


def junit_outcomes(path: Path) -> dict[str, str] | None:
    """Each test's outcome ("passed", "failure", "error" or "skipped") by its id (classname::name), from pytest's
    junit XML; without it (pytest writes it at the end: a kernel that kills the process leaves none), from the
    `-v` log beside it (PATH.log), where a test that started and never finished counts as an error; None when
    neither is there."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return _log_outcomes(path.with_suffix(".log"))
    return {f"{case.get('classname')}::{case.get('name')}":
            next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
            for case in root.iter("testcase")}


_LOG_OUTCOMES = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failure", "ERROR": "error",
                 "SKIPPED": "skipped", "XFAIL": "skipped"}


def _log_outcomes(log: Path) -> dict[str, str] | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    outcomes = {}
    for line in lines:
        found = re.match(r"(tests/\S+::\S+)(?:\s+(PASSED|XPASS|FAILED|ERROR|SKIPPED|XFAIL)\b)?", line)
        if found:
            outcomes[found[1]] = _LOG_OUTCOMES[found[2]] if found[2] else "error"  # no outcome: it died there
    return outcomes or None


def junit_counts(path: Path) -> dict | None:
    """Counts and failing test ids from pytest's junit XML (or its -v log), None if neither is readable."""
    outcomes = junit_outcomes(path)
    if outcomes is None:
        return None
    counts = {"passed": 0, "failed": 0, "skipped": 0, "failures": []}
    for test, outcome in outcomes.items():
        if outcome in ("passed", "skipped"):
            counts[outcome] += 1
        else:
            counts["failed"] += 1
            counts["failures"].append(test)
    return counts


def environment() -> dict:
    """Card, driver, versions (those every bench records) and whether the fused plugin's CUDA kernel can run
    here."""
    import torch

    from dali_has import fused, plugin_build

    try:
        card = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        card = f"nvidia-smi unavailable: {e}"
    started = time.monotonic()
    loaded = fused.load()
    plugin_s = round(time.monotonic() - started, 1)
    built = plugin_build.build() if loaded else None  # cached by now: what the notes quote of the build
    return {"date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "nvidia_smi": card, "torch_device": torch.cuda.get_device_name(0),
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "driver_cuda_version": fused.driver_cuda_version(), "versions": versions(), "cpu_count": os.cpu_count(),
            "fused_plugin": {"loaded": loaded, "reason": fused.unavailable_reason(),
                             "gpu_kernel_usable": fused.gpu_available(),
                             "gpu_reason": fused.gpu_unavailable_reason(),
                             "kernel_cuda_version": built.cuda_version if built else None,
                             "kernel_oldest_arch": built.oldest_arch if built else None,
                             "load_s": plugin_s}}


def pipeline_memory(data: str, threads: tuple[int, ...] = MEMORY_THREADS, batch_size: int = 256) -> list[dict]:
    """What one GPU training pipeline (decode, crop, normalize, HaS) holds, per DALI thread count, after 3 batches
    (fewer if one epoch holds fewer).

    device_mb: drop in free device memory (cudaMemGetInfo), which includes torch's cached output tensors;
    host_mb: growth of this process's proportional set size (`train.bench.memory`; pinned buffers included);
    both back near zero after the loader is closed (`released_*`).
    """
    import torch

    from dali_has import HaSConfig
    from pipelines import make_loader

    rows = []
    for count in threads:
        if count > (os.cpu_count() or 1):
            continue
        torch.cuda.synchronize()
        free0, host0 = device_free_mb(), process_tree_mb()
        loader = make_loader(data, train=True, batch_size=batch_size, device="gpu", has=HaSConfig(),
                             num_threads=count, dtype=torch.float16, seed=SEED)
        batches = iter(loader)
        for _ in range(min(3, len(loader))):  # an epoch of the bench images may hold fewer than 3 batches
            next(batches)
        torch.cuda.synchronize()
        free1, host1 = device_free_mb(), process_tree_mb()
        del batches
        loader.close()
        torch.cuda.empty_cache()
        free2, host2 = device_free_mb(), process_tree_mb()
        known = None not in (host0, host1, host2)  # /proc may not say (process_tree_mb)
        rows.append({"threads": count, "device_mb": free0 - free1, "host_mb": host1 - host0 if known else None,
                     "released_device_mb": free2 - free1, "released_host_mb": host1 - host2 if known else None})
    return rows


def _step_main(argv: list[str]) -> None:
    """`python -m train.bench.gpu_check environment OUT.json` / `memory OUT.json DATA`: one step, figures to a file."""
    what, path = argv[0], Path(argv[1])
    result = environment() if what == "environment" else pipeline_memory(argv[2])
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    _step_main(sys.argv[1:])
