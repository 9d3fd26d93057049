"""A run folder's files and how they are written and read.

    RUN/config.json     the resolved TrainConfig
    RUN/checkpoint.pt   model, optimizer, epoch, RNG, best-so-far: written after every epoch (the learning rate
                        is a function of the epoch, see train.trainer.lr_factor: no scheduler state)
    RUN/best.pt         the same, from the epoch with the best validation result so far (with --val-data)
    RUN/metrics.jsonl   one JSON line per epoch

Checkpoints are written to a temporary file and renamed, so a crash never leaves half a checkpoint. They hold
tensors and plain data only (the config as JSON data) and are read with `torch.load(weights_only=True)`: a run
folder may come from anyone, and unpickling anything else could run code, so such a file is refused.

The folder given is the run: `load_run_config` sets `out` to it whatever config.json says, so resuming a copied
run never writes into the original, and resolves a relative `data` against it (new runs store absolute paths).
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import torch

from train.config import TrainConfig

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"
# What every checkpoint holds, and of which type.
_ENTRIES = {"model": dict, "optimizer": dict, "num_classes": int, "epoch": int,
            "torch_rng": torch.Tensor}


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` (tensors and plain data only) to `path` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint, its tensors on the CPU, loaded without running code (`weights_only=True`). Anything but
    tensors and plain data, a damaged file or a missing entry is a ValueError naming the file; a missing file
    is a FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {path.parent} is not a run folder with that checkpoint")
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
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a dali-has checkpoint (it holds a {type(state).__name__}, not a dict)")
    for key, kind in _ENTRIES.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise ValueError(f"{path}: entry {key!r} is missing or not a {kind.__name__}; not a dali-has checkpoint")
    if state["num_classes"] < 1 or state["epoch"] < 0:
        raise ValueError(f"{path}: num_classes={state['num_classes']}, epoch={state['epoch']} cannot be right")
    return state


def load_weights(path: Path, model: torch.nn.Module, weights: dict) -> None:
    """`model.load_state_dict(weights)`, a mismatch being a ValueError naming the checkpoint `path`."""
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: its weights do not fit the model its config.json describes ({error})") from None


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The config of a run folder, for resuming or evaluating it (see the module docstring)."""
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


def load_trained_model(run_dir: str | Path, device: torch.device | str = "cpu", checkpoint: str = CHECKPOINT):
    """The model of a run folder with the weights of `checkpoint` (the latest, or BEST), in eval mode, and the
    run's config."""
    cfg = load_run_config(run_dir)
    path = Path(run_dir) / checkpoint
    state = load_checkpoint(path)
    model = cfg.build_model(state["num_classes"])
    load_weights(path, model, state["model"])
    return model.to(device).eval(), cfg
