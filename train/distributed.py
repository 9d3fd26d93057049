"""Process-group setup for `torchrun` (any number of nodes): gloo on the CPU, nccl on GPUs; single process otherwise."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str) -> DistEnv:
    """Join the process group that torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK, ...)."""
    world, rank, local_rank = (_environment_int(name, default) for name, default in
                               (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if world > 1 and missing:  # torch said "RANK expected" after a "waiting for all ranks at ?:?" line
        raise ValueError(f"the environment says WORLD_SIZE={world} but not {', '.join(missing)}; start the ranks "
                         "with torchrun, which sets them all, or unset WORLD_SIZE to train in one process")
    if not 0 <= rank < world:  # a RANK left in the shell: it was "shard_id=1 must be ... <= 0"
        raise ValueError(f"the environment says RANK={rank} of WORLD_SIZE={world}; torchrun sets both: unset them "
                         "to train in one process")
    check_device(device)
    if device == "gpu":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        # It waits for every rank (torch's timeout: 30 minutes); a lone process with WORLD_SIZE set said nothing.
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        print(f"rank {rank}: waiting for all {world} ranks at {where} (started by torchrun; a process started "
              "alone with WORLD_SIZE set waits for ranks that never come)", file=sys.stderr, flush=True)
        dist.init_process_group(backend="nccl" if device == "gpu" else "gloo")
    return DistEnv(rank, world, local_rank, torch_device)


def _environment_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:  # it said "invalid literal for int() with base 10: 'abc'"
        raise ValueError(f"the environment variable {name}={value!r} is not a whole number; torchrun sets it: "
                         "unset it to train in one process") from None


def check_device(device: str) -> None:
    """A one-line error for `--device gpu` on a machine without CUDA (torch's own came as a traceback)."""
    if device == "gpu" and not torch.cuda.is_available():
        raise ValueError("device='gpu' but CUDA is not available here; use --device cpu")


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few scalars over all ranks (identity in a single process)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank, as DDP makes them before each forward: each rank's
    last step updated its own, so validation on each rank would use another model than the checkpoint holds."""
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def all_gather_objects(value) -> list:
    """`value` (any picklable object) of every rank, in rank order; `[value]` in a single process."""
    if not dist.is_initialized():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
