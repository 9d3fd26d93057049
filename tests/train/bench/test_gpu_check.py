"""`dali-has gpu-check`: what can be checked without a GPU (the plan, the summary, the step runner)."""
import json
import subprocess
import sys
import time

import pytest
import torch

from train.bench import gpu_check, pipeline_stages
from train.cli import build_parser, main


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_stops_at_once_saying_why(tmp_path, capsys):
    assert main(["gpu-check", "--out", str(tmp_path / "out")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_every_planned_dali_has_command_parses(tmp_path):
    parser = build_parser()
    planned = [step.argv for step in gpu_check.plan(tmp_path, tmp_path / "data")]
    commands = [argv[3:] for argv in planned if argv[1:3] == ["-m", "train.cli"]]
    assert {argv[0] for argv in commands} == {"bench", "train"} and len(commands) == 4
    for argv in commands:
        parser.parse_args(argv)  # a misspelt option would exit here


def test_the_test_steps_collect_the_gpu_tests_from_the_repository_the_untried_kernels_first(tmp_path):
    """The first run on a GPU (an H200) found the step looking for train/tests: REPO was one folder too deep. The
    never-run kernels' tests came last in one pytest process of 240 s, after ~100 slower tests: they run first
    now, in a process of their own."""
    assert (gpu_check.REPO / "pyproject.toml").is_file()
    steps = [s for s in gpu_check.plan(tmp_path, tmp_path / "data") if s.name.endswith("_tests")]
    assert [s.name for s in steps] == ["kernel_tests", "gpu_tests"]
    collected = {}
    for step in steps:
        assert step.argv[-1] == str(gpu_check.REPO / "tests")
        # -qq after the step's -v: one test id a line
        argv = [a for a in step.argv if not a.startswith("--junitxml")] + ["--collect-only", "-qq"]
        run = subprocess.run(argv, capture_output=True, text=True, cwd=gpu_check.REPO)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        collected[step.name] = {line for line in run.stdout.splitlines() if "::" in line}
    kernel, other = collected["kernel_tests"], collected["gpu_tests"]
    assert not kernel & other and any(gpu_check.FUSED_RESIZE_TESTS in test for test in kernel)
    assert any("test_gpu_output_equals_oracle" in test for test in other)
    assert not any(gpu_check.FUSED_RESIZE_TESTS in test for test in other)


def test_step_runner_reports_ok_failure_and_timeout(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as on a machine that does not set it
    def step(name, code):
        return gpu_check.Step(name, [sys.executable, "-c", code], 30)

    assert gpu_check._run_step(step("ok", "print('hi')"), tmp_path, 30)["status"] == "ok"
    assert (tmp_path / "ok.log").read_text().strip() == "hi"
    failed = gpu_check._run_step(step("bad", "raise SystemExit(3)"), tmp_path, 30)
    assert (failed["status"], failed["returncode"]) == ("failed", 3)
    # What a step printed before its time ran out stays in its log (it was lost in Python's buffer).
    slow = step("slow", "import time; print('started'); time.sleep(30)")
    assert gpu_check._run_step(slow, tmp_path, 3)["status"] == "timeout"
    assert (tmp_path / "slow.log").read_text().strip() == "started"
    # A time-out ends the step's subprocesses too: they outlived it, running into the next steps' timings.
    marker = tmp_path / "grandchild-alive"
    (tmp_path / "grandchild.py").write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w').close()\n")
    grandchild = str(tmp_path / "grandchild.py")
    child = f"import subprocess, sys, time; subprocess.Popen([sys.executable, {grandchild!r}]); time.sleep(30)"
    assert gpu_check._run_step(step("tree", child), tmp_path, 1)["status"] == "timeout"
    time.sleep(4)
    assert not marker.exists()


def test_the_summary_is_written_after_every_step_and_checkpoints_do_not_stay(tmp_path, monkeypatch):
    """It was written once, at the end: a check cut off by its caller kept nothing. The trainings' checkpoints
    (~470 MB) kept OUT from coming back from a lent machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("train.bench.data.bench_jpegs", lambda: tmp_path / "data")
    seen = []

    def fake_step(step, out, limit_s):
        assert out.is_absolute()  # the steps run in the repository's folder: a relative OUT split the results
        if seen:  # the summary of every earlier step is on disk before the next step starts
            assert set(json.loads((out / gpu_check.SUMMARY).read_text())["steps"]) == set(seen)
        if step.name == "train_resnet50":
            (out / "run_resnet50").mkdir()
            (out / "run_resnet50" / "checkpoint.pt").write_bytes(bytes(1000))
            (out / "run_resnet50" / "metrics.jsonl").write_text('{"epoch": 1}\n{"epo')  # cut off mid-line
        if step.name == "bench_alexnet_gap":
            (out / "bench_alexnet_gap.json").write_text('{"gpu_name": "H')  # cut off while writing
        seen.append(step.name)
        return {"status": "ok"}

    monkeypatch.setattr(gpu_check, "_run_step", fake_step)
    monkeypatch.chdir(tmp_path)
    summary = gpu_check.run_check("out", budget_s=600)
    assert summary["steps"]["train_resnet50"]["checkpoint_bytes"] == {"checkpoint.pt": 1000}
    assert not list((tmp_path / "out").rglob("*.pt"))
    assert summary["train"]["resnet50"] == [{"epoch": 1}]
    assert summary["bench"]["alexnet_gap"] == {"unreadable": "bench_alexnet_gap.json"}


def test_junit_counts_and_summary(tmp_path):
    (tmp_path / "gpu_tests.xml").write_text(
        '<testsuites><testsuite><testcase classname="a" name="t1"/><testcase classname="a" name="t2">'
        '<failure message="x"/></testcase><testcase classname="b" name="t3"><skipped/></testcase>'
        '<testcase classname="b" name="t4"><error message="y"/></testcase></testsuite></testsuites>')
    assert gpu_check.junit_counts(tmp_path / "gpu_tests.xml") == {
        "passed": 1, "failed": 2, "skipped": 1, "failures": ["a::t2", "b::t4"]}
    assert gpu_check.junit_counts(tmp_path / "missing.xml") is None
    # A kernel that kills pytest leaves no XML: the -v log says what passed, and which test it died in.
    (tmp_path / "crashed.log").write_text(
        "tests/dali_has/test_a.py::test_one PASSED                 [ 10%]\n"
        "tests/dali_has/test_a.py::test_two[x] SKIPPED (needs it)  [ 20%]\n"
        "tests/dali_has/test_resize_mirror_normalize_gpu.py::test_kernel \nFatal Python error: Segmentation fault\n")
    assert gpu_check.junit_counts(tmp_path / "crashed.xml") == {
        "passed": 1, "failed": 1, "skipped": 1,
        "failures": ["tests/dali_has/test_resize_mirror_normalize_gpu.py::test_kernel"]}
    assert not gpu_check.fused_resize_kernel_passed(tmp_path / "crashed.xml")
    (tmp_path / "memory.json").write_text(json.dumps([{"threads": 1, "device_mb": 10.0}]))
    (tmp_path / "run_resnet50").mkdir()
    (tmp_path / "run_resnet50" / "metrics.jsonl").write_text('{"epoch": 1, "img_s": 100.0}\n')
    sweep = [{"threads": 16, "img_s": {"none": 9e4}}]  # a bench cut off by its time limit after its sweep
    (tmp_path / "bench_alexnet_gap.json").write_text(json.dumps({"complete": False, "sweep": sweep}))
    (tmp_path / "kernel_tests.xml").write_text('<testsuites><testsuite><testcase classname="k" name="t"/>'
                                               '</testsuite></testsuites>')
    summary = gpu_check.summarize(tmp_path, {"memory": {"status": "ok"}, "gpu_tests": {"status": "failed"}}, 12.3,
                                  450)
    assert summary["kernel_tests"] == {"passed": 1, "failed": 0, "skipped": 0, "failures": []}
    assert summary["bench"]["alexnet_gap"]["complete"] is False and summary["bench"]["alexnet_gap"]["sweep"] == sweep
    assert summary["memory"] == [{"threads": 1, "device_mb": 10.0}]
    assert summary["train"] == {"resnet50": [{"epoch": 1, "img_s": 100.0}]}
    assert summary["gpu_tests"]["failed"] == 2 and summary["passed"] is False


KERNEL_CASE = '<testcase classname="tests.dali_has.test_resize_mirror_normalize_gpu" name="{}">{}</testcase>'


@pytest.mark.parametrize("cases, skips_fused", [
    (KERNEL_CASE.format("a", ""), False),
    (KERNEL_CASE.format("a", "") + KERNEL_CASE.format("b", '<failure message="x"/>'), True),
    (KERNEL_CASE.format("a", "<skipped/>"), True),
    ('<testcase classname="tests.dali_has.test_fused" name="a"/>', True),  # the kernel's tests did not run
    (None, True),  # pytest died before writing its report
])
def test_the_stage_benchmark_leaves_the_fused_kernel_out_unless_its_gpu_tests_passed(tmp_path, cases, skips_fused):
    """A CUDA kernel that faults takes the process's CUDA context down: the stages timed after it would be lost."""
    if cases is not None:
        (tmp_path / "kernel_tests.xml").write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    steps = {step.name: step for step in gpu_check.plan(tmp_path, tmp_path / "data")}
    stages, note = gpu_check.with_what_the_tests_allow(steps["stages"], tmp_path)
    assert (stages.argv[-2:] == ["--skip", "fused"]) == skips_fused == (note is not None)
    assert gpu_check.with_what_the_tests_allow(steps["memory"], tmp_path) == (steps["memory"], None)
    # The options it is given parse; no_has (timed by the bench step) stays left out either way.
    skipped = pipeline_stages.parse_args(stages.argv[3:]).skip
    assert sorted(skipped) == (["fused", "no_has"] if skips_fused else ["no_has"])


@pytest.mark.gpu
def test_memory_step_measures_an_epoch_shorter_than_three_batches(tmp_path):
    """512 bench images at batch 256 are 2 batches: the step once asked for a third and raised StopIteration."""
    from train.bench.data import CLASSES, bench_jpegs

    (row,) = gpu_check.pipeline_memory(str(bench_jpegs(CLASSES * 2, tmp_path)), threads=(1,), batch_size=CLASSES)
    assert row["threads"] == 1 and row["device_mb"] > 0


@pytest.mark.parametrize("budget", ["nan", "-1", "0", "inf", "soon"])
def test_a_budget_that_is_not_a_positive_number_of_seconds_is_refused(budget, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["gpu-check", "--out", str(tmp_path / "out"), "--budget", budget])
    assert stop.value.code == 2 and "give a number of seconds > 0" in capsys.readouterr().err


def test_the_environment_records_the_date_the_card_and_the_kernels_build(monkeypatch):
    """What the notes quote of a GPU run: they had to be pieced together from the logs."""
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (9, 0))
    found = gpu_check.environment()
    assert found["torch_device"] == "NVIDIA H200" and found["compute_capability"] == "9.0"
    assert found["versions"]["torch"] == torch.__version__ and "nvidia_dali" in found["versions"]
    assert found["date_utc"].endswith("Z") and {"kernel_cuda_version", "kernel_oldest_arch"} <= set(
        found["fused_plugin"])


def test_the_command_reports_the_kernel_tests_and_the_other_gpu_tests(tmp_path, monkeypatch, capsys):
    summary = {"passed": False, "wall_s": 401.0, "kernel_tests": {"passed": 5, "failed": 1, "skipped": 0},
               "gpu_tests": None}  # cut off before pytest wrote its report
    monkeypatch.setattr(gpu_check, "run_check", lambda out, budget: summary)
    assert main(["gpu-check", "--out", str(tmp_path)]) == 1
    assert ("FAILED in 401 s; kernel tests: 5 passed, 1 failed, 0 skipped; gpu tests: ? passed, ? failed, ? skipped"
            in capsys.readouterr().out)
