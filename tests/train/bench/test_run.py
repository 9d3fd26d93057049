"""`dali-has bench`: the timing structure (with a fake clock), the verdict, the settings, the generated JPEG set
and the JSON of a tiny real CPU run. No wall-clock time is asserted anywhere."""
from __future__ import annotations

import json
import shlex

import pytest
import torch
from PIL import Image

from pipelines.own_files import TEMPORARY_SUFFIX
from train.bench import run as bench_run
from train.bench.data import CLASSES, bench_jpegs, bench_prepared, bench_prepared_shards
from train.bench.run import (
    BenchSettings,
    Timer,
    Variant,
    _torchvision_batches,
    _train_step,
    data_ratios,
    overhead_pct,
    verdict,
    whole_rounds,
)
from train.bench.timing import batches_consumed, measure, measure_clocks
from train.cli import build_parser, main


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeBatches:
    """Batches of `images` images; batch i takes seconds[i] (the last value repeats) on the fake clock."""

    def __init__(self, clock: FakeClock, seconds: list[float], images: int = 8, log: list | None = None,
                 name: str = ""):
        self.clock, self.seconds, self.images, self.consumed = clock, seconds, images, 0
        self.log, self.name = log if log is not None else [], name

    def __iter__(self):
        return self

    def __next__(self) -> int:
        self.clock.now += self.seconds[min(self.consumed, len(self.seconds) - 1)]
        self.consumed += 1
        self.log.append(self.name)
        return self.images


def test_warmup_batches_are_consumed_but_not_timed():
    clock = FakeClock()
    batches = FakeBatches(clock, [100.0] * 3 + [0.5])  # a slow start (queue filling, kernels compiling)
    m = measure({"a": batches}, warmup=3, iters=4, runs=2, clock=clock)["a"]
    assert batches.consumed == 3 + 2 * 4 == batches_consumed(1, warmup=3, iters=4, runs=2)
    assert m.runs == (8 * 4 / (4 * 0.5),) * 2  # images / seconds of the timed batches only
    assert (m.warmup, m.iters) == (3, 4)


def test_the_median_of_the_runs_is_reported_and_runs_follow_each_other():
    clock = FakeClock()
    # run 1: 2 batches of 1 s, run 2: 2 of 4 s, run 3: 2 of 2 s; no warm-up.
    m = measure({"a": FakeBatches(clock, [1.0, 1.0, 4.0, 4.0, 2.0])}, warmup=0, iters=2, runs=3, clock=clock)["a"]
    assert m.runs == (8.0, 2.0, 4.0)
    assert m.median == 4.0
    assert m.to_dict() == {"img_s": 4.0, "runs": [8.0, 2.0, 4.0], "warmup_batches": 0, "timed_batches_per_run": 2}


def test_variants_alternate_run_by_run_and_rewarm_after_waiting():
    clock, log = FakeClock(), []
    streams = {name: FakeBatches(clock, [seconds], log=log, name=name)
               for name, seconds in (("none", 1.0), ("composed", 2.0), ("fused", 4.0))}
    timed = measure(streams, warmup=1, iters=2, runs=2, clock=clock)
    assert "".join(name[0] for name in log) == "nnncccfffnnncccfff"  # 1 warm-up + 2 timed, each run of each
    assert all(s.consumed == batches_consumed(3, warmup=1, iters=2, runs=2) for s in streams.values())
    assert {name: m.runs for name, m in timed.items()} == {"none": (8.0, 8.0), "composed": (4.0, 4.0),
                                                          "fused": (2.0, 2.0)}


def test_each_stream_can_warm_up_for_its_own_prefetch_queue():
    clock, log = FakeClock(), []
    streams = {"dali": FakeBatches(clock, [1.0], log=log, name="d"),
               "torchvision": FakeBatches(clock, [1.0], log=log, name="t")}
    timed = measure(streams, warmup={"dali": 1, "torchvision": 3}, iters=2, runs=2, clock=clock)
    assert "".join(log) == "ddd" "ttttt" "ddd" "ttttt"  # its own warm-up, then 2 timed batches, run after run
    assert (timed["dali"].warmup, timed["torchvision"].warmup) == (1, 3)


def test_several_clocks_time_the_same_runs():
    """The wall and CPU clocks of `measure_wall_and_cpu`: one pass of the streams, each run read on both."""
    wall, log = FakeClock(), []

    class Cpu:  # two cores busy in the first stream's batches, one in the second's
        def __call__(self):
            return sum(2.0 if name == "a" else 1.0 for name in log)

    streams = {name: FakeBatches(wall, [1.0], log=log, name=name) for name in ("a", "b")}
    by_wall, by_cpu = measure_clocks(streams, warmup=1, iters=2, runs=2, clocks=(wall, Cpu()))
    assert all(s.consumed == batches_consumed(2, warmup=1, iters=2, runs=2) for s in streams.values())
    assert by_wall["a"].runs == by_wall["b"].runs == (8.0, 8.0)  # 2 batches of 8 images in 2 s
    assert by_cpu["a"].runs == (4.0, 4.0) and by_cpu["b"].runs == (8.0, 8.0)  # 16 images per 4 / 2 CPU s


def test_each_run_waits_for_the_device_before_the_clock_stops():
    clock, waits = FakeClock(), []

    def sync():  # the device still had 3 s of queued work
        waits.append(clock.now)
        clock.now += 3.0

    m = measure({"a": FakeBatches(clock, [1.0])}, warmup=2, iters=5, runs=2, sync=sync, clock=clock)["a"]
    assert len(waits) == 1 + 2  # after warm-up (not timed), then at the end of each run (timed)
    assert m.runs == (8 * 5 / (5 * 1.0 + 3.0),) * 2


def test_verdict_names_the_slower_side_and_the_ratio():
    assert verdict(300.0, 1200.0) == "input-bound: the loader delivers 25.0 % of what the model can consume"
    assert verdict(1000.0, 7.5) == "compute-bound: the model consumes 0.8 % of what the loader delivers"
    assert verdict(500.0, 500.0).startswith("compute-bound: the model consumes 100.0 %")


def test_verdict_says_when_loader_and_model_slow_each_other_down():
    # Figures of an H200 run: loader 28,530, AlexNet-GAP step 26,133, both together 15,369 img/s.
    said = verdict(28530.0, 26133.0, 15369.0)
    assert said.startswith("compute-bound: the model consumes 91.6 %")
    assert said.endswith("together they reach only 59 % of the slower one alone: loading and the model step "
                         "compete for the same GPU or CPU")
    assert verdict(1000.0, 500.0, 490.0) == verdict(1000.0, 500.0)  # 98 %: nothing to add


def test_no_verdict_when_training_outran_its_slower_part():
    """A disturbed model run (60 img/s against 680 end to end) still gave "compute-bound: 0.4 %"."""
    assert verdict(15000.0, 60.0, 680.0).startswith("no verdict: training ran at 1133 % of the slower")
    assert verdict(1000.0, 500.0, 740.0) == verdict(1000.0, 500.0)  # 148 %: within the scatter of short runs


def test_each_stream_can_time_its_own_number_of_batches():
    clock, log = FakeClock(), []
    streams = {"dali": FakeBatches(clock, [1.0], log=log, name="d"),
               "torchvision": FakeBatches(clock, [1.0], log=log, name="t")}
    timed = measure(streams, warmup=1, iters={"dali": 2, "torchvision": 4}, runs=2, clock=clock)
    assert "".join(log) == "ddd" "ttttt" "ddd" "ttttt"
    assert (timed["dali"].iters, timed["torchvision"].iters) == (2, 4)
    assert timed["torchvision"].runs == (8.0, 8.0)


@pytest.mark.parametrize("iters, workers, rounded", [(10, 16, 16), (40, 2, 40), (41, 2, 42), (50, 16, 64),
                                                     (1, 1, 1)])
def test_torchvision_runs_time_whole_rounds_of_its_workers(iters, workers, rounded):
    assert whole_rounds(iters, workers) == rounded


def test_torchvision_baseline_gets_a_fresh_dataloader_each_turn(tmp_path, monkeypatch):
    """So its workers never prefetch while another loader is timed; a turn is its warm-up plus its timed run."""
    made = []

    class CountingDataLoader(bench_run.DataLoader):
        def __init__(self, *args, **kwargs):
            made.append(kwargs["sampler"].num_samples)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(bench_run, "DataLoader", CountingDataLoader)
    settings = BenchSettings(data=str(bench_jpegs(CLASSES, tmp_path)), batch_size=2, crop=32)
    batches = _torchvision_batches(settings, settings.data, workers=0, has=True, per_turn=3)
    assert [next(batches) for _ in range(7)] == [2] * 7
    assert made == [3 * 2] * 3  # batches 1-3, 4-6, then 7 from a third loader


def test_the_torchvision_baseline_reads_a_folder_with_an_empty_class(tmp_path):
    """`train` and `prepare` take it (the class keeps its label); the bench failed in torchvision's ImageFolder."""
    data = bench_jpegs(CLASSES, tmp_path)
    (data / "zz_empty").mkdir()
    settings = BenchSettings(data=str(data), batch_size=2, crop=32)
    assert next(_torchvision_batches(settings, settings.data, workers=0, has=True, per_turn=1)) == 2


def test_has_overhead_is_the_lost_share_of_the_pipeline_rate():
    assert overhead_pct(400.0, 300.0) == 25.0
    assert overhead_pct(400.0, 440.0) == -10.0
    assert overhead_pct(400.0, None) is None


def test_settings_take_device_defaults_and_name_bad_values(tmp_path):
    cpu = BenchSettings(threads=(2,))
    assert (cpu.batch_size, cpu.dtype, cpu.hw_decoder_load) == (64, "float32", ())
    assert cpu.combinations() == [(2, None)]
    assert BenchSettings(threads=[1, 2], warmup=0).warmup == 0
    for kwargs, name in [({"hw_decoder_load": (0.5,)}, "hw_decoder_load"), ({"threads": (0,)}, "threads=0"),
                         ({"batch_size": 0}, "batch_size=0"), ({"dtype": "int8"}, "dtype='int8'"),
                         ({"arch": "vgg"}, "arch='vgg'"), ({"device": "tpu"}, "device='tpu'"),
                         ({"model": {"depth": 3}}, "depth"), ({"data": str(tmp_path / "x.txt")}, "x.txt"),
                         ({"prepared": str(tmp_path / "none")}, "prepared="), ({"resize": ("bicubic",)}, "resize="),
                         ({"crop": 8}, "crop=8 is too small for alexnet_gap.*give --crop 31")]:  # was after the loaders
        with pytest.raises(ValueError, match=name):
            BenchSettings(**kwargs)
    jpegs, pixels = bench_prepared(16, 64, tmp_path), bench_prepared(16, 64, tmp_path, encoding="npy")
    assert BenchSettings(prepared=str(jpegs), prepared_npy=str(pixels)).prepared_npy == str(pixels)
    with pytest.raises(ValueError, match="prepared_npy=.* is not a folder of decoded pixels"):
        BenchSettings(prepared_npy=str(jpegs))
    with pytest.raises(ValueError, match="prepared=.* is not a folder of JPEGs"):
        BenchSettings(prepared=str(pixels))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_gpu_settings_without_cuda_are_an_error():
    with pytest.raises(ValueError, match="no CUDA device"):
        BenchSettings(device="gpu")


def test_generated_jpegs_are_imagenet_sized_deterministic_and_cached(tmp_path):
    first, second = bench_jpegs(16, tmp_path / "a"), bench_jpegs(16, tmp_path / "b")
    files = sorted(p.relative_to(first) for p in first.rglob("*.jpg"))
    assert len(files) == 16 and len({f.parent for f in files}) == CLASSES
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    with Image.open(first / files[0]) as image:
        assert 400 <= image.width <= 500 and image.format == "JPEG"
    (first / files[0]).unlink()  # a cached set is reused as it is, not regenerated
    assert bench_jpegs(16, tmp_path / "a") == first and not (first / files[0]).exists()
    with pytest.raises(ValueError, match="images=3"):
        bench_jpegs(3, tmp_path)


def test_the_prepared_set_is_made_once_with_prepare(tmp_path):
    prepared = bench_prepared(16, max_side=64, cache_dir=tmp_path)
    manifest = json.loads((prepared / "prepare.json").read_text())
    assert manifest["source"] == str(bench_jpegs(16, tmp_path)) and manifest["prepared"] == 16
    assert manifest["settings"]["max_side"] == 64
    assert all(min(Image.open(p).size) == 64 for p in prepared.rglob("*.jpg"))
    (prepared / "prepare.json").unlink()  # reused as it is, not made again
    assert bench_prepared(16, max_side=64, cache_dir=tmp_path) == prepared
    assert not (prepared / "prepare.json").exists()


def test_the_prepared_shards_hold_the_same_images(tmp_path):
    from pipelines.webdataset import read_index, sample_name

    folder = bench_prepared(16, max_side=64, cache_dir=tmp_path)
    shards = bench_prepared_shards(16, max_side=64, cache_dir=tmp_path)
    entries = [e for shard in sorted(shards.glob("*.tar")) for e in read_index(shard)]
    assert sorted(sample_name(e.key) + ".jpg" for e in entries) == sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*.jpg"))


def test_data_ratios_compare_what_the_targets_are_stated_in():
    rates = {Variant("DALI", "originals", "NCHW", "builtin"): (1000.0,),
             Variant("DALI", "originals", "NHWC", "builtin"): (1100.0,),
             Variant("DALI", "prepared", "NCHW", "builtin"): (2000.0,),
             Variant("DALI", "prepared", "NHWC", "builtin"): (2400.0,),
             Variant("DALI", "prepared", "NHWC", "fused"): (4800.0,),
             Variant("torchvision", "originals", "NCHW"): (600.0,),
             Variant("FFCV", "prepared", "NHWC", has=False, storage="jpg"): (3000.0,),
             Variant("FFCV", "prepared", "NHWC", has=False, storage="raw"): (6000.0,)}
    ratios = {key: value["median"] for key, value in data_ratios(rates).items() if value is not None}
    assert ratios["prepared/originals NHWC builtin resize"] == 2400 / 1100
    assert ratios["NHWC/NCHW prepared builtin resize"] == 1.2
    assert ratios["best DALI/torchvision originals"] == 8.0
    assert ratios["DALI prepared NHWC/FFCV prepared NHWC jpg"] == 1.6  # the best resize variant
    assert ratios["DALI prepared NHWC/FFCV prepared NHWC raw"] == 0.8
    assert ratios["fused/builtin resize prepared NHWC"] == 2.0
    assert Variant("FFCV", "prepared", "NHWC", has=False, storage="raw").name == "FFCV prepared NHWC raw (no HaS)"
    assert data_ratios({Variant("DALI", "originals", "NCHW", "builtin"): (1.0,)})[
        "NHWC/NCHW prepared builtin resize"] is None


def test_ratios_pair_the_runs_timed_in_the_same_round():
    # Round 3 ran while another process took half the machine: both streams slowed down together.
    rates = {Variant("DALI", "originals", "NCHW", "builtin"): (100.0, 100.0, 50.0),
             Variant("DALI", "prepared", "NCHW", "builtin"): (200.0, 200.0, 100.0)}
    ratio = data_ratios(rates)["prepared/originals NCHW builtin resize"]
    assert ratio == {"median": 2.0, "runs": [2.0, 2.0, 2.0]}
    rates[Variant("DALI", "prepared", "NCHW", "builtin")] = (100.0, 200.0, 100.0)  # a slow round of its own
    assert data_ratios(rates)["prepared/originals NCHW builtin resize"]["runs"] == [1.0, 2.0, 2.0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real CPU bench on 16 generated JPEGs and their prepared copy: batch 4, 32-pixel crops, a narrow
    AlexNet-GAP, 2 threads swept."""
    tmp = tmp_path_factory.mktemp("bench")
    data = bench_jpegs(16, tmp / "cache")
    prepared = bench_prepared(16, max_side=64, cache_dir=tmp / "cache")
    prepared_npy = bench_prepared(16, max_side=64, cache_dir=tmp / "cache", encoding="npy")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DALI_HAS_CACHE", str(tmp / "cache"))  # where FFCV's .beton goes, if ffcv is installed
        yield _run_tiny(tmp, data, prepared, prepared_npy)


def _run_tiny(tmp, data, prepared, prepared_npy) -> dict:
    out = tmp / "bench.json"
    argv = ["bench", "--data", str(data), "--prepared", str(prepared), "--prepared-npy", str(prepared_npy),
            "--device", "cpu", "--batch-size", "4",
            "--num-threads", "1", "2", "--crop", "32", "--model-opt", "stem=small", "--model-opt", "width=0.125",
            "--iters", "2", "--model-iters", "2", "--warmup", "3", "--runs", "1", "--no-progress", "--json", str(out)]
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_bench_json_holds_every_figure_the_sweep_and_the_machine(tiny_run):
    r = tiny_run
    assert r["complete"] is True and r["device"] == "cpu" and r["gpu_name"] is None and r["batch_size"] == 4
    assert r["threads"] in (1, 2) and r["cpu_count"] >= 1 and r["versions"]["torch"] == torch.__version__
    assert set(r["pipeline_img_s"]) == {"none", "composed", "fused"}
    assert set(r["torchvision_img_s"]) == {"none", "has"}
    figures = [*r["pipeline_img_s"].values(), *r["torchvision_img_s"].values(), r["model_step_img_s"],
               r["end_to_end_img_s"]]
    assert all(v is None or v > 0 for v in figures)  # fused is None only where the plugin cannot be built
    # 2 model batches on a shared machine can read far below end to end: then the bench gives no verdict.
    plausible = r["end_to_end_pct_of_bound"] <= bench_run.IMPLAUSIBLE_PCT
    assert r["verdict"].startswith(("input-bound: the loader delivers", "compute-bound: the model consumes")
                                   if plausible else "no verdict: training ran at")
    assert set(r["has_overhead_pct"]) == {"composed", "fused"} and set(r["dali_vs_torchvision"]) == {"none", "has"}
    assert [(row["threads"], row["hw_decoder_load"]) for row in r["sweep"]] == [(1, None), (2, None)]
    best = max(r["sweep"], key=lambda row: max(row["img_s"]["composed"], row["img_s"]["fused"] or 0))
    assert r["threads"] == best["threads"] and r["pipeline_img_s"] == best["img_s"]


def test_bench_compares_originals_and_prepared_in_both_layouts_with_torchvision(tiny_run):
    compared = tiny_run["data_variants"]
    dali = {name for name in compared["img_s"] if name.startswith("DALI")}
    resizes = ("builtin", "fused") if tiny_run["fused"]["available"] else ("builtin",)
    assert dali == {f"DALI {source} {layout} {resize} resize" for source in ("originals", "prepared", "prepared npy")
                    for layout in ("NCHW", "NHWC") for resize in resizes}
    assert {"torchvision originals NCHW", "torchvision originals NCHW (no HaS)"} <= set(compared["img_s"])
    has_ffcv = compared["ffcv_unavailable"] is None
    ffcv = {"FFCV prepared NHWC jpg (no HaS)", "FFCV prepared NHWC raw (no HaS)"}
    assert ffcv & set(compared["img_s"]) == (ffcv if has_ffcv else set())
    assert all(rate > 0 for rate in compared["img_s"].values())
    assert {v["name"] for v in compared["variants"]} == set(compared["img_s"]) == set(tiny_run["runs"]["data_variants"])
    runs = tiny_run["runs"]["data_variants"]
    assert compared["ratios"]["prepared/originals NCHW builtin resize"]["runs"] == [
        a / b for a, b in zip(runs["DALI prepared NCHW builtin resize"]["runs"],
                              runs["DALI originals NCHW builtin resize"]["runs"])]
    assert tiny_run["torchvision_img_s"]["has"] == compared["img_s"]["torchvision originals NCHW"]
    assert ("DALI prepared NHWC/FFCV prepared NHWC jpg" in compared["ratios"]) == has_ffcv
    assert ("DALI prepared npy NHWC/FFCV prepared NHWC raw" in compared["ratios"]) == has_ffcv
    assert compared["ratios"]["prepared npy/originals NHWC builtin resize"]["median"] > 0


def test_bench_reports_the_memory_of_each_loader_measured_alone(tiny_run):
    memory = tiny_run["data_variants"]["memory_mb"]
    names = {v["name"] for v in tiny_run["data_variants"]["variants"]
             if (v["loader"] != "DALI" or v["layout"] == "NCHW") and (v["loader"] != "torchvision" or v["has"])}
    assert set(memory) == names and "torchvision originals NCHW" in names
    for name, m in memory.items():
        assert "error" not in m, (name, m)
        assert m["host_mb"] > 0 and m["device_mb"] is None and m["batches"] > 3
    # torchvision's workers are processes of their own, each with its own Python and torch
    assert memory["torchvision originals NCHW"]["host_mb"] > 50


def test_bench_times_runs_times_iters_batches_after_a_warmup_that_drains_the_queue(tiny_run):
    runs = tiny_run["runs"]
    torchvision = [m for name, m in runs["data_variants"].items() if name.startswith("torchvision")]
    dali = [*runs["pipeline"].values(), runs["end_to_end"],
            *(m for name, m in runs["data_variants"].items() if name.startswith("DALI"))]
    for m in filter(None, dali + torchvision):
        assert len(m["runs"]) == 1 and m["img_s"] == m["runs"][0]
    for m in filter(None, dali):
        assert m["timed_batches_per_run"] == 2 and m["warmup_batches"] >= 3 * 2  # 3 × DALI's prefetch queue (2)
    workers = tiny_run["threads"]
    for m in torchvision:  # a fresh DataLoader each turn: one queue (workers × prefetch_factor 2), whole rounds
        assert m["warmup_batches"] == max(3, 2 * workers)
        assert m["timed_batches_per_run"] == whole_rounds(2, workers)
    assert runs["model_step"]["warmup_batches"] == 3 and runs["model_step"]["timed_batches_per_run"] == 2


def test_a_bench_cut_off_keeps_the_figures_it_measured(tmp_path, monkeypatch, capsys):
    """gpu-check gives each bench a time limit; the JSON was written only at the end, so a cut bench left nothing."""
    def cut_off(*args, **kwargs):
        raise KeyboardInterrupt  # what a time limit's signal amounts to

    monkeypatch.setattr(bench_run.Timer, "model_step", cut_off)
    out = tmp_path / "bench.json"
    out.write_text('{"complete": true, "sweep": "an earlier run\'s"}')  # replaced before the first figure
    assert main(["bench", "--data", str(bench_jpegs(8, tmp_path / "cache")), "--device", "cpu", "--batch-size", "4",
                 "--num-threads", "1", "--crop", "32", "--model-opt", "stem=small", "--model-opt", "width=0.125",
                 "--resize", "builtin", "--iters", "1", "--model-iters", "1", "--warmup", "1", "--runs", "1",
                 "--no-progress", "--json", str(out)]) == 130
    assert f"the figures measured so far are in {out}" in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["complete"] is False and "model_step_img_s" not in report
    assert [row["threads"] for row in report["sweep"]] == [1] and report["sweep"][0]["img_s"]["none"] > 0
    assert report["data_variants"]["img_s"]["DALI originals NCHW builtin resize"] > 0
    assert report["data_variants"]["memory_mb"]["torchvision originals NCHW"]["host_mb"] > 0
    assert "--json" in report["command"] and not list(tmp_path.glob(f"*{TEMPORARY_SUFFIX}"))
    with monkeypatch.context() as patch:  # cut before any figure: the file is this run's, empty of figures
        patch.setattr(bench_run.Timer, "pipelines", cut_off)
        assert main(["bench", "--data", str(bench_jpegs(8, tmp_path / "cache")), "--device", "cpu", "--crop", "32",
                     "--model-opt", "stem=small", "--no-progress", "--json", str(out)]) == 130
    report = json.loads(out.read_text())
    assert report["complete"] is False and "sweep" not in report and report["settings"]["crop"] == 32


def test_bench_json_command_repeats_the_run(tiny_run):
    words = shlex.split(tiny_run["command"])
    assert words[:2] == ["dali-has", "bench"]
    args = build_parser().parse_args(words[1:])
    assert (args.batch_size, args.num_threads, args.crop, args.model_opt) == (4, [1, 2], 32,
                                                                               ["stem=small", "width=0.125"])
    assert args.prepared.endswith("-prepared-v1-64") and args.resize == ["builtin", "fused"]
    assert args.json.endswith("bench.json") and args.runs == 1


def test_compile_times_the_compiled_step_beside_the_eager_one(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)
    s = BenchSettings(device="cpu", batch_size=2, crop=32, model={"stem": "small", "width": 0.125}, model_iters=1,
                      runs=2, warmup=1, compile=True)
    steps = {"eager": _train_step(s), "compiled": _train_step(s, compile=True)}
    timed = Timer(s, progress=False).model_step(steps)
    assert len(compiled) == 1 and set(timed) == {"eager", "compiled"}
    assert all(len(m.runs) == 2 and m.median > 0 for m in timed.values())
    assert "--compile" in shlex.split(s.command())
