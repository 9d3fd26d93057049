"""Memory a loader holds while it runs, for `dali-has bench` and `gpu-check`.

Host memory is the proportional set size (PSS) of this process and every process it started (a DataLoader's
workers, their fork server): each shared page is counted once, split among the processes that map it, so 16
workers sharing torch's libraries are not counted 16 times, while the shared-memory batches they hand over are.
Device memory is the drop in free memory the CUDA driver reports (DALI's pools, torch's cache, the batches).

`loader_memory` measures one data-comparison loader of the bench alone, in a fresh Python process: memory that
one loader freed but the allocator kept (glibc arenas, DALI's pools) would otherwise be charged to, or hide
under, the next one.

    python -m train.bench.memory SPEC_JSON OUT.json   # what loader_memory runs: the figures into OUT.json
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

MEASURED_BATCHES = 5  # drawn after the loader's warm-up, so its queues and pools have reached their steady size
TIMEOUT_S = 300


def process_tree_mb(pid: Optional[int] = None) -> Optional[float]:
    """PSS in MB of process `pid` (default: this one) and all its descendants; None where /proc cannot say."""
    pid = os.getpid() if pid is None else pid
    total_kb = 0
    for member in [pid, *_descendants(pid)]:
        try:
            with open(f"/proc/{member}/smaps_rollup") as rollup:
                total_kb += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
        except FileNotFoundError:  # a child that exited meanwhile
            if member == pid:
                return None
        except (OSError, StopIteration, ValueError):
            return None
    return total_kb / 1024


def _descendants(pid: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ')'
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def device_free_mb() -> float:
    """Free memory of the current CUDA device in MB."""
    import torch

    return torch.cuda.mem_get_info()[0] / 2**20


def loader_memory(spec: dict) -> dict:
    """Measure one loader in a fresh process. spec: {"settings": BenchSettings as a dict, "variant": Variant as
    a dict, "folder", "threads", "hw_decoder_load", "has_impl"}; returns {"host_mb", "device_mb" (None on the
    CPU), "batches"}, or {"error": why} when the measuring process failed before writing them. A process that
    fails at exit, after writing them (FFCV 1.0.2's threads can abort the interpreter's teardown), has measured:
    its figures stand, with "exit" saying what happened."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "memory.json"  # not stdout, which libraries may write to as well
        try:
            done = subprocess.run([sys.executable, "-m", "train.bench.memory", json.dumps(spec), str(result)],
                                  capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"error": f"no result within {TIMEOUT_S} s"}
        last_words = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        if not result.is_file():
            return {"error": last_words}
        measured = json.loads(result.read_text())
        if done.returncode != 0:
            measured["exit"] = f"exit code {done.returncode} after writing its figures: {last_words}"
        return measured


def _measure(spec: dict) -> dict:
    import torch

    from train.bench.run import BenchSettings, Timer, Variant

    s = BenchSettings(**spec["settings"])
    gpu = s.device == "gpu"
    if gpu:
        torch.cuda.init()  # the CUDA context is not the loader's
    free0, host0 = device_free_mb() if gpu else None, process_tree_mb()
    with contextlib.ExitStack() as stack:
        stream, warmup = Timer(s, progress=False).stream(Variant(**spec["variant"]), spec["folder"],
                                                           spec["threads"], spec["hw_decoder_load"],
                                                           spec["has_impl"], stack)
        stack.callback(stream.close)
        for _ in range(warmup + MEASURED_BATCHES):
            next(stream)
        if gpu:
            torch.cuda.synchronize()
        free1, host1 = device_free_mb() if gpu else None, process_tree_mb()
    return {"host_mb": None if host0 is None or host1 is None else host1 - host0,
            "device_mb": free0 - free1 if gpu else None, "batches": warmup + MEASURED_BATCHES}


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(_measure(json.loads(sys.argv[1]))))
