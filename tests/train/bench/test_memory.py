"""How the bench reads a loader's memory: PSS of the process tree, each loader measured in a fresh process."""
import subprocess
import sys
import time

import pytest

from train.bench import memory

HOLD_200_MB = """
import sys, time
block = bytearray(200 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1  # touch every page, so it is resident
print("ready", flush=True)
time.sleep(60)
"""


def _others_mb() -> float:
    """PSS of this process's descendants: the tree's minus this process's own, read right after. Not a difference
    of readings taken apart: PSS divides a shared page among its sharers, so this process's own figure moves by
    tens of MB whenever any process on the machine maps or unmaps the same libraries (torch's)."""
    tree = memory.process_tree_mb()
    with open("/proc/self/smaps_rollup") as rollup:
        own = next(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) / 1024
    return tree - own


def test_the_process_tree_includes_the_memory_of_child_processes():
    before = _others_mb()  # children earlier tests left (a fork server), if any
    child = subprocess.Popen([sys.executable, "-c", HOLD_200_MB], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        alone = memory.process_tree_mb(child.pid)
        assert alone >= 200
        assert _others_mb() - before == pytest.approx(alone, abs=20)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    time.sleep(0.1)
    assert _others_mb() - before < 10  # the child's memory left with it


def test_a_failed_measurement_says_why_instead_of_stopping_the_bench():
    result = memory.loader_memory({"settings": {"device": "tpu"}})
    assert set(result) == {"error"} and "device='tpu'" in result["error"]


def test_a_process_that_fails_at_exit_after_measuring_keeps_its_figures(monkeypatch):
    def measured_then_aborted(command, **kwargs):
        out = command[-1]  # the child writes its figures there before its teardown aborts
        with open(out, "w") as f:
            f.write('{"host_mb": 835.0, "device_mb": null, "batches": 14}')
        return subprocess.CompletedProcess(command, -6, "", "terminate called without an active exception\n")

    monkeypatch.setattr(memory.subprocess, "run", measured_then_aborted)
    result = memory.loader_memory({"settings": {}})
    assert result["host_mb"] == 835.0
    assert result["exit"] == ("exit code -6 after writing its figures: terminate called without an active "
                              "exception")
