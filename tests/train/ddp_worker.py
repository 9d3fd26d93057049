"""Run by test_trainer under torchrun: train, then compare every rank's weights and sample counts. A third argument
`resume` continues the run; `stop-after-1` stops it as a kill would, once its first epoch is saved."""
import json
import sys

import torch
import torch.distributed as dist

from pipelines.files import num_classes
from train import distributed, trainer
from train.config import TrainConfig
from train.models import build_model
from train.trainer import run_training

cfg = TrainConfig.load(sys.argv[1])
env = distributed.init("cpu")
torch.manual_seed(cfg.seed)
initial = torch.cat([p.flatten() for p in build_model(cfg.arch, num_classes(cfg.data), **cfg.model).parameters()])
mode = sys.argv[3] if len(sys.argv) > 3 else None
if mode == "stop-after-1":
    train_epoch = trainer._run_epoch

    def stop_in_second_epoch(cfg, env, net, opt, epoch, on_gpu, loader, *rest):
        if epoch == 1:
            next(iter(loader))  # a batch drawn: the saved state must not depend on it
            distributed.cleanup()
            sys.exit(0)
        return train_epoch(cfg, env, net, opt, epoch, on_gpu, loader, *rest)

    trainer._run_epoch = stop_in_second_epoch
last, model = run_training(cfg, env, resume=mode == "resume")
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.empty_like(flat) for _ in range(env.world_size)]
dist.all_gather(gathered, flat)
counts = [None] * env.world_size
dist.all_gather_object(counts, last["rank_samples"])
if env.is_main:
    report = {"rank_samples": counts, "samples": last["samples"], "val": last.get("val"),
              "weights_equal_across_ranks": all(torch.equal(gathered[0], g) for g in gathered),
              "weights_changed": not torch.equal(initial, flat)}
    with open(sys.argv[2], "w") as f:
        json.dump(report, f)
distributed.cleanup()
