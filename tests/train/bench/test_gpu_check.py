"""`dali-has gpu-check`: what can be checked without a GPU (the plan, the summary, the step runner)."""
import json
import sys

import pytest
import torch

from train.bench import gpu_check
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
    assert {argv[0] for argv in commands} == {"bench", "train"} and len(commands) == 5
    for argv in commands:
        parser.parse_args(argv)  # a misspelt option would exit here


def test_step_runner_reports_ok_failure_and_timeout(tmp_path):
    def step(name, code):
        return gpu_check.Step(name, [sys.executable, "-c", code], 30)

    assert gpu_check._run_step(step("ok", "print('hi')"), tmp_path, 30)["status"] == "ok"
    assert (tmp_path / "ok.log").read_text().strip() == "hi"
    failed = gpu_check._run_step(step("bad", "raise SystemExit(3)"), tmp_path, 30)
    assert (failed["status"], failed["returncode"]) == ("failed", 3)
    assert gpu_check._run_step(step("slow", "import time; time.sleep(30)"), tmp_path, 1)["status"] == "timeout"


def test_junit_counts_and_summary(tmp_path):
    (tmp_path / "gpu_tests.xml").write_text(
        '<testsuites><testsuite><testcase classname="a" name="t1"/><testcase classname="a" name="t2">'
        '<failure message="x"/></testcase><testcase classname="b" name="t3"><skipped/></testcase>'
        '<testcase classname="b" name="t4"><error message="y"/></testcase></testsuite></testsuites>')
    assert gpu_check.junit_counts(tmp_path / "gpu_tests.xml") == {
        "passed": 1, "failed": 2, "skipped": 1, "failures": ["a::t2", "b::t4"]}
    assert gpu_check.junit_counts(tmp_path / "missing.xml") is None
    (tmp_path / "memory.json").write_text(json.dumps([{"threads": 1, "device_mb": 10.0}]))
    (tmp_path / "run_resnet50").mkdir()
    (tmp_path / "run_resnet50" / "metrics.jsonl").write_text('{"epoch": 1, "img_s": 100.0}\n')
    summary = gpu_check.summarize(tmp_path, {"memory": {"status": "ok"}, "gpu_tests": {"status": "failed"}}, 12.3,
                                  450)
    assert summary["memory"] == [{"threads": 1, "device_mb": 10.0}]
    assert summary["train"] == {"resnet50": [{"epoch": 1, "img_s": 100.0}]}
    assert summary["gpu_tests"]["failed"] == 2 and summary["passed"] is False
