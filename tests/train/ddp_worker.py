"""Run by test_trainer under torchrun: train, then compare every rank's weights and sample counts."""
import json
import sys

import torch
import torch.distributed as dist

from pipelines.files import num_classes
from train import distributed
from train.config import TrainConfig
from train.models import build_model
from train.trainer import run_training

cfg = TrainConfig.load(sys.argv[1])
env = distributed.init("cpu")
torch.manual_seed(cfg.seed)
initial = torch.cat([p.flatten() for p in build_model(cfg.arch, num_classes(cfg.data), **cfg.model).parameters()])
last, model = run_training(cfg, env)
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
