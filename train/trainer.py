"""The training loop: DALI loader -> model -> SGD, one process per rank under torchrun.

Each epoch builds its loader with seed `base + rank + EPOCH_SEED_STRIDE * epoch`: rank 0 of epoch 0 uses the
base seed, every (rank, epoch) gets its own crops and masks, and a resumed run sees exactly the data it would
have seen, without serializing DALI's internal state. The checkpoint's `loader` entry records that rule.

Every epoch's loader is wrapped in an `InputProfiler` (CUDA events on the GPU): rank 0 prints its line and the
epoch's metrics carry its numbers under "input" (rank 0's loop; other ranks are not gathered).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.distributed.algorithms.join import Join
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dali_has import FeatureHideAndSeek, insert_after
from pipelines import InputProfiler, make_loader
from pipelines.files import load_dataset
from train import distributed
from train.config import TrainConfig
from train.models import build_model

EPOCH_SEED_STRIDE = 10_007
CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
# Batches the input profiler leaves out at the start of an epoch, at most a quarter of a short one.
PROFILE_WARMUP = 10


def epoch_seed(base: int, rank: int, epoch: int) -> int:
    return base + rank + EPOCH_SEED_STRIDE * epoch


def num_classes_of(data: str) -> int:
    """Classes of a training set: its class folders, or the largest label of a file list plus one."""
    dataset = load_dataset(data)
    if dataset.classes is not None:
        return len(dataset.classes)
    return max(label for _, label in dataset.samples) + 1


def build_cfg_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    """The configured architecture, with feature-map Hide-and-Seek inserted when asked for."""
    model = build_model(cfg.arch, num_classes, **cfg.model)
    if cfg.feature_has is not None:
        insert_after(model, cfg.feature_has.after,
                     FeatureHideAndSeek(cfg.feature_has.patch_sizes, cfg.feature_has.p_hide, fill="mean"))
    return model


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig):
    # No weight decay on biases and norm parameters (1-D tensors), as in the usual ImageNet recipes.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg.scaled_lr, momentum=cfg.momentum, nesterov=False)

    def factor(epoch: int) -> float:
        warm = min(1.0, (epoch + 1) / cfg.warmup_epochs) if cfg.warmup_epochs else 1.0
        return warm * cfg.lr_gamma ** sum(epoch >= m for m in cfg.lr_milestones)

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def fit(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train (or continue) the run described by `cfg`; returns the last epoch's metrics on every rank."""
    env = distributed.init(cfg.device)
    try:
        return run_training(cfg, env, resume)[0]
    finally:
        distributed.cleanup()


def run_training(cfg: TrainConfig, env: distributed.DistEnv, resume: bool = False) -> tuple[dict, torch.nn.Module]:
    """The loop inside an initialized process group (or a single process): (last epoch's metrics, model)."""
    # Absolute paths in config.json: the run resumes from any working directory.
    cfg = dataclasses.replace(cfg, data=os.path.abspath(cfg.data), out=os.path.abspath(cfg.out))
    num_classes = num_classes_of(cfg.data)  # a bad --data fails here, before the run folder is made
    out = Path(cfg.out)
    _check_run_folder(out)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / CONFIG)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_cfg_model(cfg, num_classes).to(env.device)
    on_gpu = env.device.type == "cuda"
    if cfg.channels_last and on_gpu:
        model = model.to(memory_format=torch.channels_last)
    opt, sched = build_optimizer(model, cfg)
    start_epoch = 0
    if resume:
        state = load_checkpoint(out)
        _load_into(out / CHECKPOINT, model, state["model"])
        try:
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise ValueError(f"{out / CHECKPOINT}: its optimizer or scheduler state does not fit this run's "
                             f"config ({error})") from None
        torch.set_rng_state(state["torch_rng"])
        start_epoch = state["epoch"]
    net = DistributedDataParallel(model) if env.world_size > 1 else model
    last = {}
    for epoch in range(start_epoch, cfg.epochs):
        last = _train_epoch(cfg, env, net, opt, epoch, on_gpu)
        last["lr"] = sched.get_last_lr()[0]
        sched.step()
        if env.is_main:
            _save_checkpoint(out, model, opt, sched, epoch + 1, cfg, num_classes)
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(last) + "\n")
    return last, model


def _train_epoch(cfg: TrainConfig, env, net, opt, epoch: int, on_gpu: bool) -> dict:
    loader = make_loader(cfg.data, train=True, batch_size=cfg.batch_size, augment=cfg.augment, crop=cfg.crop,
                         device=cfg.device, seed=epoch_seed(cfg.seed, env.rank, epoch), shard_id=env.rank,
                         num_shards=env.world_size, num_threads=cfg.num_threads, dtype=cfg.dtype, mean=cfg.mean,
                         std=cfg.std, skip_bad_files=cfg.skip_bad_files)
    with loader:  # closed at the end of the epoch: the next epoch builds its own
        return _run_epoch(cfg, env, net, opt, epoch, on_gpu, loader)


def _run_epoch(cfg: TrainConfig, env, net, opt, epoch: int, on_gpu: bool, loader) -> dict:
    net.train()
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    # Sums stay on the device: a .item() per step would stall the GPU every batch.
    loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    correct = torch.zeros((), dtype=torch.int64, device=env.device)
    seen = 0
    profiler = InputProfiler(warmup=min(PROFILE_WARMUP, steps // 4), timing="cuda" if on_gpu else "cpu")
    # Shards may differ by a batch; Join lets DDP ranks that run out early shadow the others' all-reduces.
    start = time.perf_counter()
    with Join([net]) if env.world_size > 1 else contextlib.nullcontext():
        bar = tqdm(profiler.wrap(loader), total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not env.is_main, leave=False, dynamic_ncols=True)
        for step, (images, labels) in enumerate(bar):
            if step >= steps:
                break
            images, labels = images.to(env.device, non_blocking=True), labels.to(env.device, non_blocking=True)
            if cfg.channels_last and on_gpu:
                images = images.contiguous(memory_format=torch.channels_last)
            autocast = on_gpu and cfg.amp
            if not autocast:  # a float16 loader halves the host-to-device copy; the fp32 model needs fp32 input
                images = images.float()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                logits = net(images)
                loss = F.cross_entropy(logits.float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n = labels.numel()
            loss_sum += loss.detach() * n
            correct += (logits.argmax(1) == labels).sum()
            seen += n
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}")
    if on_gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    local_seen = seen
    loss_sum, correct, seen, rate = distributed.all_reduce_sum(
        [loss_sum.item(), correct.item(), seen, seen / seconds], env.device)
    profile = profiler.summary()
    if env.is_main:
        tqdm.write(f"epoch {epoch + 1}/{cfg.epochs} input: {profiler.line()}")
    return {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_top1": 100.0 * correct / seen,
            "samples": int(seen), "rank_samples": local_seen, "img_s": rate, "seconds": seconds,
            "input": {k: profile[k] for k in ("wait_fraction", "wait_s", "img_s", "verdict", "batches",
                                              "timing")}}


def _check_run_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file; give a folder for the run (a new one, or an existing "
                         "run folder with --resume)")


def _save_checkpoint(out: Path, model, opt, sched, epoch: int, cfg: TrainConfig, num_classes: int) -> None:
    # Tensors and plain data only, so that loading needs no unpickling of objects (weights_only=True).
    state = {"model": model.state_dict(), "num_classes": num_classes, "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "epoch": epoch, "torch_rng": torch.get_rng_state(),
             "config": json.loads(json.dumps(cfg.to_dict())),
             "loader": {"seed_rule": "base + rank + %d * epoch" % EPOCH_SEED_STRIDE, "next_epoch": epoch}}
    tmp = out / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / CHECKPOINT)  # atomic: a crash never leaves a half-written checkpoint


def load_checkpoint(run_dir: str | Path) -> dict:
    """The checkpoint of a run folder, loaded without running code: tensors and plain data only
    (`torch.load(weights_only=True)`). Anything else, a damaged file or a missing entry is a ValueError naming
    the file; a missing file is a FileNotFoundError."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run folder with a checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            raise ValueError(f"{path} holds objects other than tensors and plain data; refusing to load it, since "
                             "unpickling them could run code. dali-has checkpoints never hold such objects: "
                             "use a checkpoint written by `dali-has train`") from None
        raise ValueError(f"{path} is not a readable checkpoint ({error})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise ValueError(f"{path} is not a readable checkpoint ({error})") from None
    expected = {"model": dict, "optimizer": dict, "scheduler": dict, "num_classes": int, "epoch": int,
                "torch_rng": torch.Tensor}
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a dali-has checkpoint (it holds a {type(state).__name__}, not a dict)")
    for key, kind in expected.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise ValueError(f"{path}: entry {key!r} is missing or not a {kind.__name__}; not a dali-has checkpoint")
    if state["num_classes"] < 1 or state["epoch"] < 0:
        raise ValueError(f"{path}: num_classes={state['num_classes']}, epoch={state['epoch']} cannot be right")
    return state


def _load_into(path: Path, model: torch.nn.Module, weights: dict) -> None:
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: its weights do not fit the model its config.json describes ({error})") from None


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The config of a run folder, for resuming or evaluating it. The folder given is the run: its `out` is
    `run_dir` whatever config.json says (a copied run never writes into the original), and a relative `data`
    is resolved against `run_dir` (runs written by this version store absolute paths)."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {run_dir} is not a run folder of `dali-has train`")
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path} must hold a JSON object of training settings")
    data = saved.get("data")
    if isinstance(data, str) and not os.path.isabs(data):
        resolved = run_dir.resolve() / data
        if not resolved.exists():
            raise ValueError(f"{path}: data {data!r} is relative and {resolved} does not exist; write the "
                             "dataset's absolute path into config.json")
        saved["data"] = str(resolved)
    try:
        return TrainConfig.from_dict({**saved, "out": str(run_dir.resolve())})
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def load_trained_model(run_dir: str | Path, device: torch.device | str = "cpu"):
    """The model of a run folder with its last checkpoint's weights, in eval mode, and the run's config."""
    cfg = load_run_config(run_dir)
    state = load_checkpoint(run_dir)
    model = build_cfg_model(cfg, state["num_classes"])
    _load_into(Path(run_dir) / CHECKPOINT, model, state["model"])
    return model.to(device).eval(), cfg
