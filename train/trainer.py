"""The training loop: DALI loader -> model -> SGD or AdamW, one process per rank under torchrun.

One loader (one DALI pipeline) per rank serves the whole run, seeded `base + rank`: the files are listed and
checked, the decoders allocated and the shuffle buffer filled once, and each epoch's first batches are prefetched
while the previous epoch's last ones train. (With `max_steps_per_epoch` shorter than an epoch every `for` stops
early and the next epoch starts from a fresh pipeline; see `pipelines.loader`.) To resume exactly, the loader
runs with DALI checkpointing: after every epoch each rank's `loader.state_dict()` (reader positions, shuffle
buffers, random generators) is gathered into the checkpoint, and a resumed run restores its rank's state, so it
sees exactly the crops and masks it would have seen. Resuming with another number of ranks, or from a checkpoint
without loader states, cannot be exact: the loaders then start afresh from a seed derived from the epoch, with a
warning.

Every epoch's `for` over the loader is wrapped in an `InputProfiler` (CUDA events on the GPU): rank 0 prints its
line and the epoch's metrics carry its numbers under "input" (rank 0's loop; other ranks are not gathered).

With `cfg.val`, the model is evaluated on held-out data every `val.every` epochs and after the last: each rank
evaluates its shard with the code of `dali-has eval` (`train.wsol.evaluate.evaluate_model`) and the counts are
summed over ranks, so every image counts once and the numbers equal `dali-has eval` on the same checkpoint.
The epoch with the best `val.metric` so far is kept as RUN/best.pt beside RUN/checkpoint.pt; the best value is in
the checkpoint, so a resumed run keeps comparing against it.

The learning rate is a function of the position in training (epoch + step / steps per epoch, see `lr_factor`),
set before every step. So the schedule's state is the epoch the checkpoint records, and a resumed run continues
it exactly.

Under torchrun every rank takes the same number of steps an epoch, those of the smallest shard. Shards differ by
at most one sample, which can make a batch of its own in a larger shard: that batch is read (the epoch ends and its
pipeline stays) but not trained on, so up to (ranks - 1) samples an epoch, one per larger shard. A rank that
stepped once more than another (DDP's `Join`, used before) moved its optimizer's momentum apart from the others'
while the weights were made equal again at the epoch's end, so the ranks trained on different weights, and a run
resumed from rank 0's optimizer differed from a straight one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from pipelines import InputProfiler, make_loader
from pipelines.files import class_names, dataset_labels, num_classes
from pipelines.own_files import open_own, sole_writer
from pipelines.profiler import DEFAULT_WARMUP
from train import distributed
from train.checkpoint import (
    BEST,
    CHECKPOINT,
    CONFIG,
    METRICS,
    RUN_LOCK,
    check_optimizer_state,
    check_resumable,
    load_checkpoint,
    load_weights,
    prepare_run_files,
    save_checkpoint,
)
from train.config import SPARSE_CLASSES, TrainConfig, scaled_lr
from train.models import check_crop_fits
from train.wsol.evaluate import check_evaluation, evaluate_model

EPOCH_SEED_STRIDE = 10_007  # seeds of loaders that cannot resume exactly: base + rank + stride * epoch
LOSS_CHECK_STEPS = 20  # steps between the bar's loss and the divergence check (each waits for the device)


def step_lr(cfg: TrainConfig, env: distributed.DistEnv, batch_size: int) -> float:
    """The learning rate at schedule factor 1: `cfg.lr` per LR_REFERENCE_BATCH images, scaled to the images one
    step trains on, every rank's batch together (DDP averages their gradients): 8 ranks of 32 train at the lr of
    256 (they trained at that of 32, 8x too low)."""
    return scaled_lr(cfg.lr, batch_size * env.world_size)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """The run's optimizer at learning rate `lr` (the loop sets each step's)."""
    return make_optimizer(model, cfg.optimizer, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_optimizer(model: torch.nn.Module, name: str, *, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW (beta1 = momentum), with no weight decay on biases and norm parameters (1-D
    tensors), as in the usual ImageNet recipes."""
    groups = [{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": weight_decay},
              {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=False)


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


def fit(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train (or continue) the run described by `cfg`; returns the last epoch's metrics on every rank.
    progress=False: no progress bar (rank 0 draws one per epoch), e.g. for a log file."""
    env = distributed.init(cfg.device)
    try:
        return run_training(cfg, env, resume, progress)[0]
    finally:
        distributed.cleanup()


def run_training(cfg: TrainConfig, env: distributed.DistEnv, resume: bool = False,
                 progress: bool = True) -> tuple[dict, torch.nn.Module]:
    """The loop inside an initialized process group (or a single process): (last epoch's metrics, model)."""
    # Absolute paths in config.json: the run resumes from any working directory.
    cfg = dataclasses.replace(cfg, data=os.path.abspath(cfg.data), out=os.path.abspath(cfg.out))
    names = class_names(cfg.data)  # a bad --data fails here, before the run folder is made
    classes = num_classes(cfg.data) if names is None else len(names)
    if classes < 2:  # a one-class "classifier" trained to loss 0 and 100 % top-1 on nothing
        raise ValueError(f"--data {cfg.data} holds {classes} class; a classifier needs at least 2")
    if names is None and classes > SPARSE_CLASSES and classes > (samples := len(dataset_labels(cfg.data))):
        raise ValueError(f"--data {cfg.data}: its largest label is {classes - 1:,}, which makes a classifier of "
                         f"{classes:,} classes for {samples:,} samples: check the labels (a file list's second "
                         "column, a shard's .cls), which number the classes from 0")
    check_crop_fits(lambda: cfg.build_model(classes), cfg.crop, cfg.arch)  # and a crop the network cannot take
    if cfg.val is not None:  # and validation settings it would refuse only after the first epoch
        check_evaluation(cfg, cfg.val.data, model_classes=classes, model_class_names=names, boxes=cfg.val.boxes,
                         split=cfg.val.split, resize=cfg.val.resize)
        if (count := len(dataset_labels(cfg.val.data))) < env.world_size:  # every rank validates a shard of it
            raise ValueError(f"--val-data {cfg.val.data} holds {count} sample(s), fewer than the {env.world_size} "
                             "ranks that each validate a share; give more held-out data or run fewer ranks")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file; give a folder for the run (a new one, or an existing "
                         "run folder with --resume)")
    if not env.is_main:
        return _train(cfg, env, resume, names, classes, progress)
    out.mkdir(parents=True, exist_ok=True)
    # Two processes training one folder (two jobs given one --out) mixed their metrics lines and checkpoints.
    with sole_writer(out / RUN_LOCK, f"another `dali-has train` is writing {out}; let it finish (or stop it), "
                                     "then --resume it, or give another --out"):
        return _train(cfg, env, resume, names, classes, progress)


def _train(cfg: TrainConfig, env: distributed.DistEnv, resume: bool, names: list[str] | None,
           classes: int, progress: bool) -> tuple[dict, torch.nn.Module]:
    """`run_training` once the settings are checked (and, on rank 0, the run folder is locked)."""
    out = Path(cfg.out)
    log = None
    if env.is_main:
        prepare_run_files(out)
        if not resume:  # a first epoch stopped between writing best.pt and checkpoint.pt: this run starts over
            (out / BEST).unlink(missing_ok=True)
        log = EpochLog(out, cfg.tensorboard)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = cfg.build_model(classes).to(env.device)
    on_gpu = env.device.type == "cuda"
    if cfg.channels_last and on_gpu:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model, cfg, step_lr(cfg, env, cfg.batch_size))
    start_epoch, best, loader_state, seed = 0, None, None, cfg.seed
    if resume:
        state = load_checkpoint(out / CHECKPOINT)  # on the CPU: the RNG state must stay a CPU tensor
        check_resumable(out / CHECKPOINT, state, cfg, names)
        if state["epoch"] > cfg.epochs:
            raise ValueError(f"{out} has trained {state['epoch']} epochs, more than epochs={cfg.epochs}; give "
                             f"--epochs N > {state['epoch']} to train on")
        load_weights(out / CHECKPOINT, model, state["model"])
        try:
            opt.load_state_dict(state["optimizer"])
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise ValueError(f"{out / CHECKPOINT}: its optimizer state does not fit this run's config ({error})"
                             ) from None
        check_optimizer_state(out / CHECKPOINT, opt)
        try:
            torch.set_rng_state(state["torch_rng"])
        except RuntimeError as error:
            raise ValueError(f"{out / CHECKPOINT}: torch_rng is not torch's random state ({error})") from None
        start_epoch, best = state["epoch"], state.get("best")
        if log is not None:
            log.restore(state.get("metrics"))
        loader_state, seed = _resumed_loader(state.get("loader", {}), cfg.seed, start_epoch, env)
    if env.is_main:  # after a resume's checks: a refused --epochs written into the run kept it from resuming
        cfg.save(out / CONFIG)
    net = DistributedDataParallel(model) if env.world_size > 1 else model
    if cfg.compile:
        net = torch.compile(net)
    last = {}

    def make(seed: int):
        return make_loader(cfg.data, train=True, batch_size=cfg.batch_size, augment=cfg.augment, crop=cfg.crop,
                           device=cfg.device, seed=seed, shard_id=env.rank, num_shards=env.world_size,
                           num_threads=cfg.num_threads, dtype=cfg.dtype, mean=cfg.mean, std=cfg.std,
                           skip_bad_files=cfg.skip_bad_files, checkpointing=True)

    loader = make(seed)
    if loader_state is not None:
        try:
            loader.load_state_dict(loader_state)
        except ValueError as error:  # e.g. saved by a version whose loader settings differ: resume, not exactly
            loader.close()
            loader = make(_afresh_seed(cfg.seed, start_epoch, str(error)))
    try:
        for epoch in range(start_epoch, cfg.epochs):
            last = _run_epoch(cfg, env, net, opt, epoch, on_gpu, loader, progress)
            distributed.broadcast_buffers(model)
            if not math.isfinite(last["train_loss"]):  # the same on every rank: the sums were all-reduced
                kept = f"checkpoint.pt keeps epoch {epoch}" if epoch > 0 else "no epoch was saved"
                lr = step_lr(cfg, env, loader.batch_size)
                raise ValueError(f"epoch {epoch + 1}: the training loss is {last['train_loss']}, the run diverged "
                                 f"({kept}); lower the learning rate (lr {lr:g} for the "
                                 f"{loader.batch_size * env.world_size} images of a step) and start a new run")
            improved = False
            if cfg.val is not None and ((epoch + 1) % cfg.val.every == 0 or epoch + 1 == cfg.epochs):
                last["val"] = _validate(cfg, env, model, names)
                value = last["val"][cfg.val.metric]
                improved = best is None or value > best["value"]
                if improved:
                    best = {"metric": cfg.val.metric, "value": value, "epoch": epoch + 1}
                last["best"] = best
            loader_states = distributed.all_gather_objects(loader.state_dict())
            if env.is_main:
                state = _state(model, opt, epoch + 1, cfg, classes, names, best, loader_states, last)
                # best.pt before checkpoint.pt: a stop between them retrains this epoch (exactly) and writes
                # both again, where the other order kept an older best.pt for good. The metrics line goes last:
                # a resume writes it from the checkpoint when a stop took it.
                if improved:
                    save_checkpoint(out / BEST, state)
                save_checkpoint(out / CHECKPOINT, state)
                log.write(last)
    finally:
        loader.close()
        if log is not None:
            log.close()
    return last, model


def _resumed_loader(saved: dict, base_seed: int, epoch: int, env) -> tuple[dict | None, int]:
    """(this rank's loader state, loader seed) for a run resumed at `epoch`; no state when none can be exact."""
    states = saved.get("states")
    if states is not None and len(states) == env.world_size:
        return states[env.rank], base_seed
    why = (f"it was written by {len(states)} rank(s), this run has {env.world_size}" if states is not None
           else "it holds no loader states (written by an older version)")
    return None, _afresh_seed(base_seed, epoch, why)


def _afresh_seed(base_seed: int, epoch: int, why: str) -> int:
    """The loader seed of a run resumed at `epoch` whose saved loader state cannot be used (warned, with why)."""
    warnings.warn(f"resuming at epoch {epoch + 1} cannot replay the data exactly: {why}; the loaders start "
                  "afresh with new crops and masks", stacklevel=3)
    return base_seed + EPOCH_SEED_STRIDE * epoch


def _validate(cfg: TrainConfig, env: distributed.DistEnv, model: torch.nn.Module, names: list[str] | None) -> dict:
    """cfg.val's metrics of the model as it is now, every rank evaluating its shard, the counts summed."""
    result = evaluate_model(model, cfg, cfg.val.data, boxes=cfg.val.boxes, split=cfg.val.split, resize=cfg.val.resize,
                            batch_size=cfg.batch_size, device=cfg.device, num_threads=cfg.num_threads,
                            progress=False, shard_id=env.rank, num_shards=env.world_size,
                            reduce=lambda counts: distributed.all_reduce_sum(counts, env.device),
                            model_class_names=names)
    model.train()
    return result.metrics


class EpochLog:
    """Every epoch's numbers as one line of RUN/metrics.jsonl and, with tensorboard=True, as TensorBoard scalars
    in RUN/tensorboard (nested entries such as val/top1 flattened with slashes)."""

    def __init__(self, out: Path, tensorboard: bool):
        self._path = out / METRICS
        with open_own(self._path, append=True):  # a link there is refused now, not after the first epoch
            pass
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError("--tensorboard needs the tensorboard package: pip install 'dali-has[tensorboard]'"
                                 ) from None
            self._writer = SummaryWriter(str(out / "tensorboard"))

    def restore(self, metrics: dict | None) -> None:
        """Drop a last line a stop cut short, and write the checkpoint's epoch line (`metrics`) when a stop after
        the checkpoint took it."""
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            data = b""
        whole = data[:data.rfind(b"\n") + 1]
        if len(whole) < len(data):  # the next line was appended onto it: two epochs lost, no longer JSON lines
            os.truncate(self._path, len(whole))
        lines = whole.decode(errors="replace").splitlines()
        try:
            last = int(json.loads(lines[-1])["epoch"]) if lines else 0
        except (ValueError, KeyError, TypeError, OverflowError, RecursionError):  # not ours: leave the log as it is
            return
        if metrics is not None and metrics.get("epoch", 0) > last:
            self.write(metrics)

    def write(self, metrics: dict) -> None:
        with open_own(self._path, append=True) as f:  # through a link it appended to a file outside the run
            f.write((json.dumps(metrics) + "\n").encode())
        if self._writer is not None:
            for key, value in _scalars(metrics):
                self._writer.add_scalar(key, value, metrics["epoch"])
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _scalars(metrics: dict, prefix: str = ""):
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
            yield prefix + key, value


def _run_epoch(cfg: TrainConfig, env, net, opt, epoch: int, on_gpu: bool, loader, progress: bool = True) -> dict:
    net.train()
    shard_steps = math.ceil(loader.dataset_size // env.world_size / cfg.batch_size)  # the smallest shard's
    steps = shard_steps if cfg.max_steps_per_epoch is None else min(shard_steps, cfg.max_steps_per_epoch)
    base_lr = step_lr(cfg, env, loader.batch_size)  # a batch larger than a shard is the shard
    # Sums stay on the device: a .item() per step would stall the GPU every batch.
    loss_sum = torch.zeros((), dtype=torch.float64, device=env.device)
    correct = torch.zeros((), dtype=torch.int64, device=env.device)
    seen = 0
    # the profiler's warm-up, at most a quarter of a short epoch
    profiler = InputProfiler(warmup=min(DEFAULT_WARMUP, steps // 4), timing="cuda" if on_gpu else "cpu")
    start = time.perf_counter()
    bar = tqdm(profiler.wrap(loader), total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not (env.is_main and progress), leave=False, dynamic_ncols=True)
    for step, (images, labels) in enumerate(bar):
        if step >= steps:
            if steps < shard_steps:  # cut short on purpose: the next epoch starts a fresh pipeline
                break
            continue  # a larger shard's lone last sample (module docstring): read, not trained on
        images, labels = images.to(env.device, non_blocking=True), labels.to(env.device, non_blocking=True)
        if cfg.channels_last and on_gpu:
            images = images.contiguous(memory_format=torch.channels_last)
        lr = base_lr * lr_factor(cfg, epoch + step / steps)
        for group in opt.param_groups:
            group["lr"] = lr
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
        if step % LOSS_CHECK_STEPS == 0:
            running = loss_sum.item()
            bar.set_postfix(loss=f"{running / seen:.3f}")
            # Every rank stops at the same step (the next would wait for the others' gradients); a diverged run
            # stopped only at the end of its epoch, hours of NaN on ImageNet.
            if distributed.all_reduce_sum([float(not math.isfinite(running))], env.device)[0] > 0:
                break
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
            "lr": opt.param_groups[0]["lr"],  # the epoch's last step's
            "input": {k: profile[k] for k in ("wait_fraction", "wait_s", "img_s", "verdict", "batches",
                                              "timing")}}


def _state(model, opt, epoch: int, cfg: TrainConfig, num_classes: int, names: list[str] | None,
           best: dict | None, loader_states: list[dict], metrics: dict) -> dict:
    # The learning-rate schedule needs no state of its own: it is lr_factor(config, epoch + step / steps).
    return {"model": model.state_dict(), "num_classes": num_classes, "classes": names,
            "optimizer": opt.state_dict(),
            "epoch": epoch, "torch_rng": torch.get_rng_state(),
            "config": json.loads(json.dumps(cfg.to_dict())), "best": best,  # plain data: weights_only loads it
            "loader": {"states": loader_states},  # every rank's, in rank order (DALI checkpoints are bytes)
            "metrics": json.loads(json.dumps(metrics))}  # the epoch's metrics.jsonl line
