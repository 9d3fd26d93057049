"""The training loop: DALI loader -> model -> SGD or AdamW, one process per rank under torchrun.

Each epoch builds its loader with seed `base + rank + EPOCH_SEED_STRIDE * epoch`: rank 0 of epoch 0 uses the
base seed, every (rank, epoch) gets its own crops and masks, and a resumed run sees exactly the data it would
have seen, without serializing DALI's internal state. The checkpoint's `loader` entry records that rule.

The learning rate is a function of the position in training (epoch + step / steps per epoch, see `lr_factor`),
set before every step. So the schedule's state is the epoch the checkpoint records, a resumed run continues it
exactly, and ranks whose shards differ by a batch still agree on every step's rate.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.distributed.algorithms.join import Join
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dali_has import FeatureHideAndSeek, insert_after
from pipelines import make_loader
from pipelines.files import load_dataset
from train import distributed
from train.config import TrainConfig
from train.models import build_model

EPOCH_SEED_STRIDE = 10_007
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


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
    if cfg.feature_has_after:
        insert_after(model, cfg.feature_has_after,
                     FeatureHideAndSeek(cfg.feature_has_patch_sizes, cfg.feature_has_p_hide, fill="mean"))
    return model


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters (1-D tensors), as in the usual ImageNet recipes.
    groups = [{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": cfg.weight_decay},
              {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.scaled_lr, betas=(cfg.momentum, 0.999))
    return torch.optim.SGD(groups, lr=cfg.scaled_lr, momentum=cfg.momentum, nesterov=False)


ONECYCLE_RISE = 0.3  # share of training spent rising (torch OneCycleLR's pct_start)
ONECYCLE_START, ONECYCLE_END = 1 / 25, 1 / 25e4  # lr / div_factor and lr / (div_factor * final_div_factor)


def lr_factor(cfg: TrainConfig, progress: float) -> float:
    """The learning rate / scaled lr after `progress` epochs of training (a fraction within an epoch)."""
    if cfg.lr_schedule == "onecycle":
        t = progress / cfg.epochs
        if t < ONECYCLE_RISE:
            return _cosine(ONECYCLE_START, 1.0, t / ONECYCLE_RISE)
        return _cosine(1.0, ONECYCLE_END, (t - ONECYCLE_RISE) / (1 - ONECYCLE_RISE))
    epoch = int(progress)
    warm = min(1.0, (epoch + 1) / cfg.warmup_epochs) if cfg.warmup_epochs else 1.0
    return warm * cfg.lr_gamma ** sum(epoch >= m for m in cfg.lr_milestones)


def _cosine(start: float, end: float, t: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * min(t, 1.0))) / 2


def fit(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train (or continue) the run described by `cfg`; returns the last epoch's metrics on every rank."""
    env = distributed.init(cfg.device)
    try:
        return run_training(cfg, env, resume)[0]
    finally:
        distributed.cleanup()


def run_training(cfg: TrainConfig, env: distributed.DistEnv, resume: bool = False) -> tuple[dict, torch.nn.Module]:
    """The loop inside an initialized process group (or a single process): (last epoch's metrics, model)."""
    num_classes = num_classes_of(cfg.data)  # a bad --data fails here, before the run folder is made
    out = Path(cfg.out)
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "config.json")
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_cfg_model(cfg, num_classes).to(env.device)
    on_gpu = env.device.type == "cuda"
    if cfg.channels_last and on_gpu:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg)
    start_epoch = 0
    if resume:
        state = torch.load(out / CHECKPOINT, map_location=env.device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = state["epoch"]
    net = DistributedDataParallel(model) if env.world_size > 1 else model
    last = {}
    for epoch in range(start_epoch, cfg.epochs):
        last = _train_epoch(cfg, env, net, opt, epoch, on_gpu)
        if env.is_main:
            _save_checkpoint(out, model, opt, epoch + 1, cfg, num_classes)
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(last) + "\n")
    return last, model


def _train_epoch(cfg: TrainConfig, env, net, opt, epoch: int, on_gpu: bool) -> dict:
    loader = make_loader(cfg.data, train=True, batch_size=cfg.batch_size, crop=cfg.crop, device=cfg.device,
                         has=cfg.has_config(), seed=epoch_seed(cfg.seed, env.rank, epoch),
                         shard_id=env.rank, num_shards=env.world_size, num_threads=cfg.num_threads,
                         dtype=getattr(torch, cfg.dtype), mean=cfg.mean, std=cfg.std, random_area=cfg.random_area,
                         flip_probability=cfg.flip_probability)
    net.train()
    steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    # The largest shard's step count, the same on every rank, so all ranks set the same rates.
    schedule_steps = math.ceil(math.ceil(loader.dataset_size / env.world_size) / cfg.batch_size)
    if cfg.max_steps_per_epoch is not None:
        schedule_steps = min(schedule_steps, cfg.max_steps_per_epoch)
    # Sums stay on the device: a .item() per step would stall the GPU every batch.
    loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    correct = torch.zeros((), dtype=torch.int64, device=env.device)
    seen = 0
    # Shards may differ by a batch; Join lets DDP ranks that run out early shadow the others' all-reduces.
    start = time.perf_counter()
    with Join([net]) if env.world_size > 1 else contextlib.nullcontext():
        bar = tqdm(loader, total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not env.is_main,
                   leave=False, dynamic_ncols=True)
        for step, (images, labels) in enumerate(bar):
            if step >= steps:
                break
            images, labels = images.to(env.device, non_blocking=True), labels.to(env.device, non_blocking=True)
            if cfg.channels_last and on_gpu:
                images = images.contiguous(memory_format=torch.channels_last)
            lr = cfg.scaled_lr * lr_factor(cfg, epoch + step / schedule_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu and cfg.amp):
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
    del loader
    return {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_top1": 100.0 * correct / seen,
            "samples": int(seen), "rank_samples": local_seen, "img_s": rate, "seconds": seconds,
            "lr": opt.param_groups[0]["lr"]}  # the epoch's last step's


def _save_checkpoint(out: Path, model, opt, epoch: int, cfg: TrainConfig, num_classes: int) -> None:
    # The learning-rate schedule needs no state of its own: it is lr_factor(config, epoch + step / steps).
    state = {"model": model.state_dict(), "num_classes": num_classes, "optimizer": opt.state_dict(),
             "epoch": epoch, "torch_rng": torch.get_rng_state(), "config": cfg.to_dict(),
             "loader": {"seed_rule": "base + rank + %d * epoch" % EPOCH_SEED_STRIDE, "next_epoch": epoch}}
    tmp = out / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / CHECKPOINT)  # atomic: a crash never leaves a half-written checkpoint


def load_trained_model(run_dir: str | Path, device: torch.device | str = "cpu"):
    """The model of a run folder with its last checkpoint's weights, in eval mode, and the run's config."""
    run_dir = Path(run_dir)
    cfg = TrainConfig.load(run_dir / "config.json")
    state = torch.load(run_dir / CHECKPOINT, map_location=device, weights_only=False)
    model = build_cfg_model(cfg, state["num_classes"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg

