"""The training loop: config validation, CLI errors, exact resume, and a 2-process torchrun run on the CPU."""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dali_has import HaSConfig
from pipelines import TrainAugment
from train import trainer
from train.checkpoint import CHECKPOINT
from train.cli import main
from train.config import FeatureHaS, TrainConfig, Validation
from train.trainer import fit, lr_factor
from train.wsol.evaluate import evaluate

SMALL = {"stem": "small", "width": 0.125, "batch_norm": True}


def tiny_config(data, out, **kw) -> TrainConfig:
    return TrainConfig(**{**dict(data=str(data / "train"), out=str(out), epochs=2, batch_size=8, lr=0.4, crop=64,
                                 augment=TrainAugment(has=HaSConfig((0, 8, 16))), num_threads=1, model=dict(SMALL),
                                 seed=3), **kw})


def test_config_defaults_follow_the_arch_and_bad_values_are_named():
    cfg = TrainConfig(data="d", out="o", arch="resnet50")
    assert (cfg.epochs, cfg.lr, cfg.lr_milestones) == (90, 0.1, (30, 60))
    assert TrainConfig(data="d", out="o").lr_milestones == (25, 50)
    for bad, match in [(dict(arch="vgg"), "arch='vgg'"), (dict(batch_size=0), "batch_size=0"),
                       (dict(lr=-1.0), "lr=-1.0"), (dict(device="tpu"), "device='tpu'"),
                       (dict(augment={"has": {"p_hide": 2.0}}), "p_hide=2.0"), (dict(mean=(1, 2)), "mean"),
                       (dict(optimizer="adam"), "optimizer='adam'; expected one of 'sgd', 'adamw'"),
                       (dict(lr_schedule="cosine"), "lr_schedule='cosine'"),
                       (dict(lr_schedule="onecycle", warmup_epochs=1), "warmup_epochs=1 with lr_schedule")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(data="d", out="o", **bad)
    with pytest.raises(ValueError, match="unknown training option.*'epoch'"):
        TrainConfig.from_dict({"data": "d", "out": "o", "epoch": 3})


def test_paper_sgd_step_schedule_stays_the_default():
    for arch in ("alexnet_gap", "resnet50"):
        cfg = TrainConfig(data="d", out="o", arch=arch)
        assert (cfg.optimizer, cfg.lr_schedule) == ("sgd", "step")
    cfg = TrainConfig(data="d", out="o", warmup_epochs=2)  # alexnet_gap: /10 at 25 and 50
    assert [lr_factor(cfg, e) for e in (0, 0.9, 1, 24.5, 25, 50)] == [0.5, 0.5, 1.0, 1.0, 0.1, 0.1 ** 2]


def test_onecycle_rises_to_the_lr_at_30_percent_then_decays_to_almost_zero():
    cfg = TrainConfig(data="d", out="o", epochs=10, lr_schedule="onecycle")
    factors = [lr_factor(cfg, 10 * t / 1000) for t in range(1001)]
    assert factors[0] == pytest.approx(1 / 25) and factors[-1] == pytest.approx(1 / 25e4)
    assert max(factors) == factors[300] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:300], factors[1:301]))  # rising within the first epochs ...
    assert all(a > b for a, b in zip(factors[300:], factors[301:]))  # ... and falling after
    assert lr_factor(cfg, 0.5) != lr_factor(cfg, 0.0)  # changes within an epoch, not per epoch


def test_cli_rejects_unknown_and_invalid_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "d", "--out", "o", "--epoch", "3"])
    assert e.value.code == 2
    assert main(["train", "--data", "d", "--out", "o", "--lr", "-1"]) == 2
    assert "lr=-1.0 must be > 0" in capsys.readouterr().err
    assert main(["train", "--data", "d", "--out", "o", "--model-opt", "depth=3"]) == 2
    assert "unknown option(s) ['depth']" in capsys.readouterr().err
    tiny_config(tmp_path, tmp_path / "run").save(tmp_path / "config.json")
    assert main(["train", "--resume", str(tmp_path), "--lr", "0.1"]) == 2
    assert "of the options only [" in (err := capsys.readouterr().err) and "'--num-threads'" in err
    assert "may be given, not ['--lr']" in err
    assert main(["train", "--resume", str(tmp_path), "--model-opt", "width=0.5"]) == 2
    assert "not ['--model-opt']" in capsys.readouterr().err  # it named a --model no command has


def test_resume_takes_the_options_of_where_and_how_the_run_goes_on(tmp_path):
    """--num-threads and --device were refused though an edited config.json may change them."""
    from train.commands.train import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    tiny_config(tmp_path, tmp_path / "run", num_threads=1).save(tmp_path / "config.json")
    args = parser.parse_args(["train", "--resume", str(tmp_path), "--num-threads", "2", "--device", "cpu",
                              "--epochs", "5", "--no-progress", "--skip-bad-files"])
    cfg, resume = config_from_args(args)
    assert resume and (cfg.num_threads, cfg.device, cfg.epochs, cfg.lr, cfg.skip_bad_files) == (2, "cpu", 5, 0.4, True)
    cfg.save(tmp_path / "config.json")
    cfg, _ = config_from_args(parser.parse_args(["train", "--resume", str(tmp_path), "--no-skip-bad-files"]))
    assert not cfg.skip_bad_files and cfg.num_threads == 2  # switched off again; what is not given stays


@pytest.mark.parametrize("flag, bar", [([], True), (["--no-progress"], False)])
def test_no_progress_leaves_the_bars_out_of_a_training_log(tiny_synth, tmp_path, capsys, flag, bar):
    """train had no --no-progress (the README gives it to every command): torchrun logs filled with bar frames."""
    assert main(["train", "--data", str(tiny_synth / "train"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--max-steps-per-epoch", "1", "--model-opt", "stem=small", "--crop", "64", "--device", "cpu",
                 *flag]) == 0
    assert ("epoch 1/1: " in capsys.readouterr().err) == bar


def test_a_float16_loader_trains_a_float32_model_without_autocast(tiny_synth, tmp_path):
    # On the CPU (and on a GPU with amp=False) nothing casts the images to the model's float32.
    last = fit(tiny_config(tiny_synth, tmp_path / "run", epochs=1, dtype="float16", amp=False,
                           max_steps_per_epoch=2))
    assert last["samples"] == 16 and last["train_loss"] == last["train_loss"]  # ran, and the loss is not NaN


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("schedule", [dict(warmup_epochs=1, lr_milestones=(1,)),
                                      dict(optimizer="adamw", lr=0.01, weight_decay=0.05, lr_schedule="onecycle")])
def test_run_folder_and_exact_resume(tiny_synth, tmp_path, monkeypatch, capsys, schedule):
    straight = fit(tiny_config(tiny_synth, tmp_path / "a", **schedule))
    assert straight["samples"] == 37 and straight["epoch"] == 2
    run_a = tmp_path / "a"
    assert json.loads((run_a / "config.json").read_text())["epochs"] == 2
    metrics = [json.loads(line) for line in (run_a / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    # The input profiler's numbers: 5 batches of 8 per epoch, 1 of them warm-up.
    for m in metrics:
        profile = m["input"]
        assert profile["batches"] == 4 and profile["timing"] == "cpu"
        assert 0 <= profile["wait_fraction"] <= 1 and profile["wait_s"] >= 0 and profile["img_s"] > 0
        assert profile["verdict"].startswith(("input-bound: ", "compute-bound: "))
    printed = capsys.readouterr().out
    assert "epoch 1/2 input: " in printed and "epoch 2/2 input: " in printed and "cpu timing" in printed

    # The same run, stopped after its first epoch's checkpoint, then resumed from the command line.
    original = trainer._run_epoch

    def stop_in_second_epoch(cfg, env, net, opt, epoch, on_gpu, loader, *rest):
        if epoch == 1:
            next(iter(loader))  # killed after drawing a batch: the checkpoint must not depend on it
            raise Interrupted
        return original(cfg, env, net, opt, epoch, on_gpu, loader, *rest)

    with monkeypatch.context() as m, pytest.raises(Interrupted):
        m.setattr(trainer, "_run_epoch", stop_in_second_epoch)
        fit(tiny_config(tiny_synth, tmp_path / "b", **schedule))
    after_one = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert after_one["epoch"] == 1
    assert main(["train", "--resume", str(tmp_path / "b"), "--epochs", "2"]) == 0
    a = torch.load(run_a / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)
    assert (a["optimizer"]["state"][0].keys() >= {"exp_avg", "exp_avg_sq"}) == (schedule.get("optimizer") == "adamw")
    # Not trivially equal: the second epoch did change the weights.
    assert any(not torch.equal(after_one["model"][k], v) for k, v in a["model"].items() if v.is_floating_point())


def _torchrun(cfg: TrainConfig, folder: Path, *worker_args: str) -> dict:
    """`cfg` trained by two processes under torchrun (tests/train/ddp_worker.py): its report, warnings in it."""
    cfg.save(folder / "cfg.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    worker = Path(__file__).with_name("ddp_worker.py")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(worker), str(folder / "cfg.json"), str(folder / "report.json"), *worker_args],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads((folder / "report.json").read_text()), "stderr": proc.stderr}


@pytest.mark.slow
def test_two_process_torchrun_on_cpu(tiny_synth, tmp_path):
    # 37 samples over 2 ranks -> shards of 18 and 19 -> 3 and 4 batches of 6: both ranks take 3 steps (the fourth
    # batch, of the larger shard's one extra sample, is read and not trained on), as DDP needs.
    # Validation on the 12 held-out images: each rank evaluates 6, the counts are summed over ranks.
    val = Validation(data=str(tiny_synth / "test"), boxes=str(tiny_synth / "boxes.json"))
    report = _torchrun(tiny_config(tiny_synth, tmp_path / "ddp", epochs=1, batch_size=6, val=val), tmp_path)
    assert report["rank_samples"] == [18, 18]  # both ranks stepped, on disjoint shards
    assert report["samples"] == 36
    assert report["weights_equal_across_ranks"] is True
    assert report["weights_changed"] is True
    states = torch.load(tmp_path / "ddp" / CHECKPOINT, weights_only=True)["loader"]["states"]
    assert [state["shard"] for state in states] == [[0, 2], [1, 2]]  # every rank's loader state, for resuming
    alone = evaluate(tmp_path / "ddp", val.data, val.boxes, progress=False).metrics  # one process, all 12 images
    assert report["val"] == json.loads(json.dumps(alone)) and alone["count"] == 12


@pytest.mark.slow
def test_two_process_training_resumes_exactly(tiny_synth, tmp_path):
    """Each rank restores its own loader state: a 2-rank run stopped after epoch 1 and resumed ends with the weights
    of a straight run. Before: every rank's state was refused (a check expected one shard's record), and the
    resumed run warned and trained on other crops and masks."""
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    _torchrun(tiny_config(tiny_synth, tmp_path / "a" / "run", epochs=2, batch_size=6), tmp_path / "a")
    stopped = tiny_config(tiny_synth, tmp_path / "b" / "run", epochs=2, batch_size=6)
    with pytest.raises(FileNotFoundError):  # stopped: no report
        _torchrun(stopped, tmp_path / "b", "stop-after-1")
    assert torch.load(tmp_path / "b" / "run" / CHECKPOINT, weights_only=True)["epoch"] == 1
    resumed = _torchrun(stopped, tmp_path / "b", "resume")
    assert "cannot replay the data exactly" not in resumed["stderr"]
    straight = torch.load(tmp_path / "a" / "run" / CHECKPOINT, weights_only=True)
    again = torch.load(tmp_path / "b" / "run" / CHECKPOINT, weights_only=True)
    assert straight["epoch"] == again["epoch"] == 2
    for key, value in straight["model"].items():
        torch.testing.assert_close(again["model"][key], value, rtol=0, atol=0, msg=key)


def test_feature_map_hide_and_seek_is_inserted_trained_and_reloaded(tiny_synth, tmp_path):
    from dali_has import FeatureHideAndSeek
    from train.checkpoint import load_trained_model

    fit(tiny_config(tiny_synth, tmp_path / "f", epochs=1, feature_has=FeatureHaS("body.2", patch_sizes=(3,))))
    model, cfg, _ = load_trained_model(tmp_path / "f")
    inserted = [m for m in model.modules() if isinstance(m, FeatureHideAndSeek)]
    assert len(inserted) == 1 and cfg.feature_has.after == "body.2"
    assert inserted[0].running_mean.abs().sum() > 0  # the fill statistics were learned and saved
    with pytest.raises(ValueError, match="no layer named 'body.99'"):
        fit(tiny_config(tiny_synth, tmp_path / "g", epochs=1, feature_has=FeatureHaS("body.99")))


def test_the_run_closes_its_loader(tiny_synth, tmp_path):
    from pipelines.loader import _OPEN_LOADERS

    fit(tiny_config(tiny_synth, tmp_path / "run", epochs=2, max_steps_per_epoch=1))
    assert not list(_OPEN_LOADERS)


def test_one_pipeline_serves_the_whole_run(tiny_synth, tmp_path, monkeypatch):
    from pipelines.loader import EpochLoader

    opened = []
    open_pipeline = EpochLoader._open

    def counting_open(self, *args, **kwargs):
        opened.append(self)
        return open_pipeline(self, *args, **kwargs)

    monkeypatch.setattr(EpochLoader, "_open", counting_open)
    fit(tiny_config(tiny_synth, tmp_path / "run", epochs=3))
    assert len(opened) == 1  # built once, iterated for 3 epochs


def test_exact_resume_when_epochs_stop_early(tiny_synth, tmp_path):
    # 2 of 5 batches per epoch: every `for` stops early, so each epoch starts from a rebuilt pipeline.
    fit(tiny_config(tiny_synth, tmp_path / "a", epochs=3, max_steps_per_epoch=2))
    fit(tiny_config(tiny_synth, tmp_path / "b", epochs=1, max_steps_per_epoch=2))
    fit(tiny_config(tiny_synth, tmp_path / "b", epochs=3, max_steps_per_epoch=2), resume=True)
    a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)
    assert a["loader"]["states"][0]["rebuilds"] == b["loader"]["states"][0]["rebuilds"] == 3
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("loader_entry,why", [({"states": [{"rank": 0}, {"rank": 1}]}, "written by 2 rank"),
                                              ({"seed_rule": "base + rank + 10007 * epoch"}, "older version")])
def test_resume_that_cannot_replay_the_data_says_so(tiny_synth, tmp_path, loader_entry, why):
    fit(tiny_config(tiny_synth, tmp_path / "run", epochs=1))
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    torch.save(dict(state, loader=loader_entry), tmp_path / "run" / CHECKPOINT)
    with pytest.warns(UserWarning, match=f"cannot replay the data exactly: .*{why}"):
        last = fit(tiny_config(tiny_synth, tmp_path / "run", epochs=2), resume=True)
    assert last["epoch"] == 2 and last["samples"] == 37


@pytest.mark.parametrize("max_steps, steps, rebuilds", [(None, 3, 0), (3, 3, 0), (2, 2, 1)])
def test_a_larger_shard_takes_the_smallest_shards_steps_and_keeps_its_pipeline(tiny_synth, tmp_path, max_steps,
                                                                               steps, rebuilds):
    """Rank 1 of 2 over 37 samples holds 19: batches of 6, 6, 6, 1 where rank 0's 18 make 3. It trains on 3 and
    reads the lone sample, so its pipeline serves the next epoch; a cap at the run's step count (3) did `break`
    there and rebuilt the pipeline every epoch, changing that rank's data."""
    from pipelines import make_loader
    from train import distributed

    cfg = tiny_config(tiny_synth, tmp_path / "run", batch_size=6, max_steps_per_epoch=max_steps)
    env = distributed.DistEnv(rank=1, world_size=2, local_rank=0, device=torch.device("cpu"))
    model = cfg.build_model(3)
    loader = make_loader(cfg.data, train=True, batch_size=6, crop=cfg.crop, seed=cfg.seed, shard_id=1, num_shards=2,
                         num_threads=1, checkpointing=True)
    with loader:
        metrics = trainer._run_epoch(cfg, env, model, trainer.build_optimizer(model, cfg, cfg.lr), 0, False, loader)
        assert metrics["rank_samples"] == 6 * steps  # all-reduced over this one process only
        assert loader.state_dict()["rebuilds"] == rebuilds


@pytest.mark.parametrize("world_size, batch_size, step_images", [
    (1, 8, 8), (2, 6, 12),  # DDP averages the ranks' gradients: a step trains on every rank's batch
    (2, 64, 38),  # a batch larger than the shard is the shard (19 of 37 samples); it scaled the lr by 64 x 2
])
def test_the_learning_rate_is_scaled_to_the_images_of_a_step_on_all_ranks(tiny_synth, tmp_path, world_size,
                                                                          batch_size, step_images):
    """Under torchrun the lr followed one rank's batch: 8 ranks of 32 trained at the lr of 32 images, not 256."""
    from pipelines import make_loader
    from train import distributed

    cfg = tiny_config(tiny_synth, tmp_path / "run", batch_size=batch_size, max_steps_per_epoch=1)
    env = distributed.DistEnv(rank=world_size - 1, world_size=world_size, local_rank=0, device=torch.device("cpu"))
    model = cfg.build_model(3)
    loader = make_loader(cfg.data, train=True, batch_size=batch_size, crop=cfg.crop, seed=cfg.seed,
                         shard_id=world_size - 1, num_shards=world_size, num_threads=1, checkpointing=True)
    with loader:
        metrics = trainer._run_epoch(cfg, env, model, trainer.build_optimizer(model, cfg, cfg.lr), 0, False, loader)
    assert metrics["lr"] == pytest.approx(cfg.lr * step_images / 256 * lr_factor(cfg, 0.0))


def test_a_diverged_epoch_stops_at_the_next_loss_check(tiny_synth, tmp_path):
    """A NaN loss was found only at the end of the epoch, after hours of training NaN weights on ImageNet."""
    from pipelines import make_loader
    from train import distributed

    cfg = tiny_config(tiny_synth, tmp_path / "run", batch_size=1, lr=1e30)
    env = distributed.DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    model = cfg.build_model(3)
    loader = make_loader(cfg.data, train=True, batch_size=1, crop=cfg.crop, seed=cfg.seed, num_threads=1)
    with loader:
        metrics = trainer._run_epoch(cfg, env, model, trainer.build_optimizer(model, cfg, cfg.lr), 0, False, loader,
                                     progress=False)
    assert metrics["train_loss"] != metrics["train_loss"]  # NaN
    assert metrics["samples"] == trainer.LOSS_CHECK_STEPS + 1 < len(loader)  # steps 0..20 of 37


def test_held_out_data_smaller_than_the_ranks_is_refused_before_training(tiny_synth, tmp_path):
    """3 ranks and 2 validation images: each rank trained its first epoch, then failed with "num_shards=3 is more
    than the data set's samples", naming neither --val-data nor the ranks."""
    from train import distributed

    val = tmp_path / "val"
    for source in sorted((tiny_synth / "test").rglob("*.jpg"))[:2]:
        (val / source.parent.name).mkdir(parents=True, exist_ok=True)
        (val / source.parent.name / source.name).write_bytes(source.read_bytes())
    cfg = tiny_config(tiny_synth, tmp_path / "run", val=Validation(data=str(val)))
    env = distributed.DistEnv(rank=0, world_size=3, local_rank=0, device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"--val-data .* holds 2 sample\(s\), fewer than the 3 ranks"):
        trainer.run_training(cfg, env)
    assert not (tmp_path / "run").exists()
