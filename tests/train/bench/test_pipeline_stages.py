"""`python -m train.bench.pipeline_stages`: tiny runs of every stage, what a stopped run keeps, the GPU graphs
defined without a GPU. Nothing here asserts a speed."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nvidia.dali.pipeline import OperatorConcurrency
from PIL import Image

from dali_has import fused
from pipelines.own_files import TEMPORARY_SUFFIX
from train.bench import pipeline_stages


@pytest.fixture
def stage_sets(tiny_sets, tmp_path, monkeypatch):
    """The tiny sets plus their max-256 copy as decoded pixels, as `pipeline_stages.file_sets` returns them."""
    pixels = tmp_path / "npy"
    pixels.mkdir()
    for i, path in enumerate(tiny_sets["longer256"]):  # decoded pixels, as `prepare --encoding npy` stores them
        np.save(pixels / f"{i}.npy", np.asarray(Image.open(path).convert("RGB")))
    sets = {**tiny_sets, "npy": sorted(pixels.glob("*.npy"))}
    monkeypatch.setattr(pipeline_stages, "file_sets", lambda images: sets)
    return sets


def run_stages(tmp_path, *options: str) -> dict:
    out = tmp_path / "s.json"
    pipeline_stages.main(["--images", "8", "--batch-size", "4", "--iters", "1", "--runs", "2", "--warmup", "1",
                          "--json", str(out), *options])
    return json.loads(out.read_text())


@pytest.mark.fused
def test_the_stage_benchmark_times_every_stage_and_charges_each_its_own_cost(stage_sets, tmp_path):
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")
    report = run_stages(tmp_path)
    assert set(report["results"]) == set(stage_sets) and report["complete"] is True
    for name, entry in report["results"].items():
        stages = entry["stages"]
        # nothing to decode in npy; `fused` and `two_pipelines` are the GPU's (on the CPU, `train` is the fused
        # operator)
        expected = [s for s in pipeline_stages.STAGES
                    if (s != "fast_idct" or name != "npy") and s not in pipeline_stages.GPU_ONLY]
        assert list(stages) == expected and entry["images"] == 8
        for stage, m in stages.items():
            assert len(m["runs"]) == 2 and m["img_s"] > 0 and m["cpu_ms_per_image"] > 0
            assert m["cores_busy"] == pytest.approx(m["cpu_ms_per_image"] * m["img_s"] / 1e3)
            before = pipeline_stages.BEFORE.get(stage)
            if before is not None:
                assert m["stage_cpu_ms_per_image"] == pytest.approx(
                    m["cpu_ms_per_image"] - stages[before]["cpu_ms_per_image"])


@pytest.mark.fused
def test_a_stage_run_stopped_midway_keeps_the_sets_it_finished(stage_sets, tmp_path, monkeypatch):
    """gpu-check stops the stage benchmark at its time limit; the JSON written after each set survives that."""
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")
    measure, calls = pipeline_stages.measure_wall_and_cpu, []

    def stopped_at_the_second_set(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a time limit's signal amounts to
        return measure(*args, **kwargs)

    monkeypatch.setattr(pipeline_stages, "measure_wall_and_cpu", stopped_at_the_second_set)
    with pytest.raises(KeyboardInterrupt):
        run_stages(tmp_path)
    report = json.loads((tmp_path / "s.json").read_text())
    assert list(report["results"]) == [next(iter(stage_sets))] and report["complete"] is False
    assert not list(tmp_path.glob(f"*{TEMPORARY_SUFFIX}"))


@pytest.mark.fused
def test_skipped_stages_are_left_out_and_said_so(stage_sets, tmp_path):
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")
    report = run_stages(tmp_path, "--skip", "no_has", "loader")
    assert report["settings"]["skip"] == ["no_has", "loader"]
    for entry in report["results"].values():
        assert "train" in entry["stages"] and not {"no_has", "loader"} & set(entry["stages"])
    with pytest.raises(SystemExit):
        pipeline_stages.parse_args(["--skip", "decode"])  # `train` is counted from it


@pytest.mark.fused
def test_the_two_pipelines_stage_takes_batches_from_two_differently_seeded_pipelines_in_turn(stage_sets,
                                                                                            monkeypatch):
    """Each of the two is the train graph with half the threads; together they deliver one batch per step."""
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")
    define, defined, ran = pipeline_stages.stage_pipeline, [], []

    def recorded(paths, stage, args, device_id, *, seed=0):
        pipe = define(paths, stage, args, device_id, seed=seed)
        defined.append((stage, args.num_threads, seed))
        run = pipe.run
        pipe.run = lambda: (ran.append(seed), run())[1]
        return pipe

    monkeypatch.setattr(pipeline_stages, "stage_pipeline", recorded)
    args = pipeline_stages.parse_args(["--batch-size", "4", "--num-threads", "4"])
    stream = pipeline_stages.batches(stage_sets["originals"], "two_pipelines", args)
    assert [next(stream) for _ in range(5)] == [4] * 5
    assert defined == [("train", 2, 0), ("train", 2, 1)] and ran == [0, 1, 0, 1, 0]


@pytest.mark.fused
def test_every_gpu_stage_graph_is_defined(stage_sets, fused_on_gpu_definable):
    args = pipeline_stages.parse_args(["--device", "gpu", "--hw-decoder-load", "0.9"])
    for paths in stage_sets.values():
        stages = pipeline_stages.stages_of(paths, "gpu")
        assert "fast_idct" not in stages and "fused" in stages and len(stages) == len(pipeline_stages.STAGES) - 1
        for stage in set(stages) - {"loader"}:  # the loader's graph is make_loader's, defined in test_gpu_graphs
            pipeline_stages.stage_pipeline(paths, stage, args, device_id=0)  # defined, never built


@pytest.mark.fused
def test_the_concurrent_stage_asks_for_full_operator_concurrency(stage_sets, fused_on_gpu_definable):
    args = pipeline_stages.parse_args(["--device", "gpu"])
    paths = stage_sets["originals"]
    train = pipeline_stages.stage_pipeline(paths, "train", args, device_id=0)  # defined, never built
    concurrent = pipeline_stages.stage_pipeline(paths, "concurrent", args, device_id=0)
    assert train.concurrency is None and concurrent.concurrency == OperatorConcurrency.FULL  # None: BACKEND


@pytest.mark.gpu
def test_full_operator_concurrency_gives_the_same_batches(stage_sets):
    """What adopting it in the loader needs: DALI keeps each operator's batches in order, so the random draws
    (crop windows, flips, hidden cells) and the pixels are the same."""
    args = pipeline_stages.parse_args(["--device", "gpu", "--batch-size", "8", "--num-threads", "2"])
    outputs = {}
    for stage in ("train", "concurrent"):
        pipe = pipeline_stages.stage_pipeline(stage_sets["originals"], stage, args, torch.cuda.current_device())
        pipe.build()
        outputs[stage] = [np.array(pipe.run()[0].as_cpu().as_array()) for _ in range(4)]
        del pipe
    for train, concurrent in zip(outputs["train"], outputs["concurrent"]):
        np.testing.assert_array_equal(train, concurrent)


@pytest.mark.gpu
@pytest.mark.untried_kernel
def test_the_stage_benchmark_runs_every_stage_on_the_gpu(stage_sets, tmp_path):
    report = run_stages(tmp_path, "--device", "gpu", "--hw-decoder-load", "0.9")
    assert report["settings"]["device"] == "gpu"
    assert set(report["results"]) == set(stage_sets)
    for entry in report["results"].values():
        assert list(entry["stages"]) == [s for s in pipeline_stages.STAGES if s != "fast_idct"]
        assert all(m["img_s"] > 0 for m in entry["stages"].values())
        assert entry["stages"]["fused"]["stage_cpu_ms_per_image"] is not None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_stage_benchmark_on_the_gpu_without_one_says_so():
    with pytest.raises(SystemExit, match="no CUDA device"):
        pipeline_stages.main(["--device", "gpu"])


@pytest.mark.fused
def test_an_unusable_gpu_kernel_leaves_out_the_fused_graph_and_the_others_hide_composed(stage_sets, monkeypatch):
    """The stage benchmark stopped at once where the kernel could not run, so read and decode went unmeasured;
    then the train graphs, asking for the plugin's Hide-and-Seek on the GPU, raised when defined."""
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")
    monkeypatch.setitem(fused._state, "gpu", False)
    monkeypatch.setitem(fused._state, "gpu_reason", "the driver is older than CUDA 13")
    args = pipeline_stages.parse_args(["--device", "gpu", "--skip", "no_has"])
    args.skip, args.has_impl, note = pipeline_stages.kernel_choice("gpu", args.skip)
    assert args.skip == ["no_has", "fused"] and args.has_impl == "composed"
    assert "the driver is older than CUDA 13" in note
    paths = stage_sets["originals"]
    for stage in set(pipeline_stages.stages_of(paths, "gpu")) - set(args.skip) - {"loader"}:
        pipeline_stages.stage_pipeline(paths, stage, args, device_id=0)  # defined, never built
    # What every train graph did before:
    with pytest.raises(RuntimeError, match="fused Hide-and-Seek operator cannot run on the GPU: the driver is older"):
        pipeline_stages.stage_pipeline(paths, "train", pipeline_stages.parse_args(["--device", "gpu"]), device_id=0)
    assert pipeline_stages.kernel_choice("cpu", []) == ([], "fused", None)
    monkeypatch.setitem(fused._state, "gpu", True)
    monkeypatch.setattr(fused, "gpu_unavailable_reason", lambda: None)
    assert pipeline_stages.kernel_choice("gpu", []) == ([], "fused", None)
