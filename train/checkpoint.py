"""A run folder's files and how they are written and read.

    RUN/config.json     the resolved TrainConfig
    RUN/checkpoint.pt   model, optimizer, epoch, RNG, best-so-far: written after every epoch (the learning rate
                        is a function of the epoch, see train.trainer.lr_factor: no scheduler state)
    RUN/best.pt         the same, from the epoch with the best validation result so far (with --val-data)
    RUN/metrics.jsonl   one JSON line per epoch

Checkpoints are written to a temporary file and renamed, so a crash never leaves half a checkpoint. They hold
tensors and plain data only (the config as JSON data) and are read with `torch.load(weights_only=True)`: a run
folder may come from anyone, and unpickling anything else could run code, so such a file is refused. The CRC-32
torch writes with each record is checked first (torch.load does not): a changed byte is a damaged checkpoint.

The folder given is the run: `load_run_config` sets `out` to it whatever config.json says, so resuming a copied
run never writes into the original, and resolves a relative `data` against it (new runs store absolute paths).
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

import torch

from pipelines.own_files import temporary, written_whole
from train.config import TrainConfig

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.jsonl"
RUN_LOCK = "train.lock"  # held by the process training the run
# What every checkpoint holds, and of which type.
_ENTRIES = {"model": dict, "optimizer": dict, "num_classes": int, "epoch": int,
            "torch_rng": torch.Tensor}
# Settings an edited config.json may change when a run resumes: where and how it runs, not what it learns. The
# data may have moved (its classes are compared instead), and so may validation's files.
RESUME_MAY_CHANGE = frozenset({"data", "out", "epochs", "device", "channels_last", "amp", "num_threads", "compile",
                               "tensorboard", "max_steps_per_epoch", "skip_bad_files"})
_MOVABLE_VAL_PATHS = ("data", "boxes")
_CRC32_OPTION = hasattr(torch.serialization, "get_crc32_options")  # torch 2.6 on can be told not to write CRCs


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` (tensors and plain data only) to `path` atomically. A failed write (a full disk: torch
    reports it as a RuntimeError of its zip writer) is an OSError naming the file, and leaves the file there as
    it was, with no partial temporary file beside it."""
    try:
        with written_whole(path) as file, _checksums_written():  # torch.save(path) wrote through a link
            torch.save(state, file)
    except (OSError, RuntimeError) as error:
        raise OSError(f"could not write {path} ({error}); the file there, if any, is unchanged: free disk space "
                      "and continue with --resume") from None


def temporaries(path: Path) -> tuple[Path, Path]:
    """Where a write of the run file `path` that did not finish left it: `written_whole`'s temporary name, and
    NAME.tmp, which versions before 2026-12-03 wrote (a run they left stopped mid-write still has it)."""
    return temporary(path), path.with_name(path.name + ".tmp")


def prepare_run_files(run_dir: Path) -> None:
    """Before any epoch: refuse a folder (or another non-file) where a checkpoint or its temporary file is written
    (found only when the epoch's checkpoint was written, losing the epoch), and remove temporary files a killed
    write left (a link among them is removed, not followed)."""
    for name in (CHECKPOINT, BEST):
        for path in (run_dir / name, *temporaries(run_dir / name)):
            if path.exists() and not path.is_file() and not path.is_symlink():
                raise ValueError(f"{path} is not a file (a folder?), and `dali-has train` writes its {name} there: "
                                 "move it out of the run folder")
        for path in temporaries(run_dir / name):
            path.unlink(missing_ok=True)  # a file or a link: a folder was refused above


def load_checkpoint(path: Path) -> dict:
    """A checkpoint, its tensors on the CPU, loaded without running code (`weights_only=True`). Anything but
    tensors and plain data, a damaged file, a missing entry or weights that are not finite is a ValueError naming
    the file; a missing file is a FileNotFoundError."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ValueError(f"{path} is not a file (a folder?); a checkpoint is a file written by `dali-has train`")
    if not path.is_file():
        if path.name == BEST and (path.parent / CHECKPOINT).is_file():
            raise FileNotFoundError(f"{path} does not exist: {path.parent} was trained without --val-data, so no "
                                    "weights were chosen as best; use its last ones (checkpoint.pt, no --best)")
        if path.name == CHECKPOINT and (path.parent / CONFIG).is_file():
            raise FileNotFoundError(f"{path} does not exist: the run in {path.parent} stopped before its first "
                                    "epoch ended; start it again (the same train command)")
        raise FileNotFoundError(f"{path} does not exist: {path.parent} is not a run folder with that checkpoint")
    damaged = (f"{path} is damaged or not a checkpoint{{}}: use another (best.pt with --best, a backup), or "
               "train again")
    if path.stat().st_size == 0:
        raise ValueError(damaged.format(" (it is empty)"))
    if (failure := _checksum_failure(path)) is not None:
        raise ValueError(damaged.format(f" ({failure})"))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "GLOBAL" in str(error):  # a class or function named: not for other refusals, which damage makes too
            raise ValueError(f"{path} holds objects other than tensors and plain data; refusing to load it, since "
                             "unpickling them could run code. dali-has checkpoints never hold such objects: "
                             "use a checkpoint written by `dali-has train`") from None
        raise ValueError(damaged.format(" (its data is not a pickle torch writes)")) from None
    except Exception as error:  # noqa: BLE001 - damaged bytes raise KeyError, IndexError, struct.error, ... in torch
        raise ValueError(damaged.format(f" ({type(error).__name__}: {_first_line(error)})")) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a dali-has checkpoint (it holds a {type(state).__name__}, not a dict)")
    for key, kind in _ENTRIES.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise ValueError(f"{path}: entry {key!r} is missing or not a {kind.__name__}; not a dali-has checkpoint")
    if state["num_classes"] < 1 or state["epoch"] < 0:
        raise ValueError(f"{path}: num_classes={state['num_classes']}, epoch={state['epoch']} cannot be right")
    _check_optional_entries(path, state)
    check_finite(path, state["model"], "weights")  # resumed, such weights trained an epoch of NaN first
    return state


@contextlib.contextmanager
def _checksums_written():
    """torch.save with the CRC-32 of every record in the zip archive (torch's default, which a caller may have
    turned off in this process; torch before 2.6 has no such option and always writes them): `load_checkpoint`
    checks them."""
    was = torch.serialization.get_crc32_options() if _CRC32_OPTION else True
    if not was:
        torch.serialization.set_crc32_options(True)
    try:
        yield
    finally:
        if not was:
            torch.serialization.set_crc32_options(False)


def _checksum_failure(path: Path) -> Optional[str]:
    """What is wrong with the CRC-32s of a checkpoint's zip archive, else None. torch.load does not check them,
    so a changed byte in the tensors (a bad disk, a damaged copy) loaded as a slightly different model, silently.
    A record whose CRC is 0 is not checked: torch writes 0 when told not to compute them. Reads the whole file
    (0.14 s for a 205 MB ResNet-50 checkpoint, as long as torch.load takes); a file that is not a zip archive is
    left to torch.load, which names what it is."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        return None
    with archive:
        for record in archive.infolist():
            if record.CRC == 0:
                continue
            try:
                with archive.open(record) as data:  # reading to its end compares the CRC
                    while data.read(1 << 20):
                        pass
            except zipfile.BadZipFile:
                return f"its record {record.filename} does not match the checksum written with it"
            except Exception as error:  # noqa: BLE001 - damaged headers raise NotImplementedError, zlib.error, ...
                return f"its zip archive cannot be read: {type(error).__name__}: {_first_line(error)}"
    return None


def _first_line(error: Exception) -> str:
    return str(error).strip().split("\n", 1)[0][:200]


def check_finite(path: Path, tensors: dict, what: str) -> None:
    """Refuse a checkpoint whose `tensors` (its weights, or its optimizer's state) hold NaN or infinity: resumed,
    a whole epoch trained before the loss said so, blaming the learning rate. Nested dicts are walked without
    recursion, each once: unpickling allows a dict that holds itself, and recursing into it was a traceback."""
    pending, seen = list(tensors.items()), {id(tensors)}
    while pending:
        name, value = pending.pop()
        if isinstance(value, dict):
            if id(value) not in seen:
                seen.add(id(value))
                pending.extend(value.items())
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.isfinite().all()):
            raise ValueError(f"{path}: NaN or infinite values in its {what} ({name}); the run it comes from "
                             "diverged or the file is damaged: use another checkpoint (best.pt with --best, a backup)")


def check_optimizer_state(path: Path, opt: torch.optim.Optimizer) -> None:
    """After `opt.load_state_dict`, which checks neither: every hyperparameter a number, every state tensor of its
    parameter's shape (a wrong one failed in the first step, after the loader was built)."""
    for group in opt.param_groups:
        for key, default in opt.defaults.items():
            if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                    isinstance(group.get(key), bool) or not isinstance(group.get(key), (int, float))):
                raise ValueError(f"{path}: optimizer setting {key}={group.get(key)!r} is not a number; not a "
                                 "checkpoint of `dali-has train`")
        for param in group["params"]:
            for key, value in opt.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(f"{path}: optimizer state {key} of shape {tuple(value.shape)} belongs to no "
                                     f"parameter of shape {tuple(param.shape)}; not a checkpoint of this run")
    check_finite(path, {f"{key} of parameter {n}": value for n, state in enumerate(opt.state.values())
                        for key, value in state.items()}, "optimizer state")


def _check_optional_entries(path: Path, state: dict) -> None:
    """The entries a resume reads besides _ENTRIES, checked before any work: a wrong `best` used to fail only after
    a whole epoch had trained."""
    rng = state["torch_rng"]
    problems = []
    if rng.dtype != torch.uint8 or rng.dim() != 1:
        problems.append(f"torch_rng is a {rng.dtype} tensor of {rng.dim()} dimension(s), not torch's byte state")
    best = state.get("best")
    if best is not None and not (isinstance(best, dict) and isinstance(best.get("metric"), str)
                                 and isinstance(best.get("epoch"), int) and isinstance(best.get("value"), (int, float))
                                 and not isinstance(best.get("value"), bool)):
        problems.append(f"best is {best!r}, not None or {{'metric': name, 'value': number, 'epoch': number}}")
    loader = state.get("loader", {})
    if not isinstance(loader, dict) or not isinstance(loader.get("states", []), list) or not all(
            isinstance(s, dict) for s in loader.get("states", [])):
        problems.append("loader is not {'states': [one dict per rank]}")
    if not isinstance(state.get("config", {}), dict):
        problems.append("config is not a mapping of settings")
    metrics = state.get("metrics")
    if metrics is not None and not (isinstance(metrics, dict) and isinstance(metrics.get("epoch"), int)):
        problems.append("metrics is not the epoch's metrics.jsonl line ({'epoch': number, ...})")
    elif metrics is not None and metrics["epoch"] != state["epoch"]:  # a resume appends it to metrics.jsonl
        problems.append(f"metrics is the line of epoch {metrics['epoch']}, the checkpoint of epoch {state['epoch']}")
    classes = state.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        problems.append("classes is not a list of class folder names")
    elif classes is not None and len(classes) != state["num_classes"]:
        problems.append(f"classes names {len(classes)} classes, num_classes is {state['num_classes']}")
    # The model is built with num_classes outputs before its weights are compared: 10**9 allocated 256 GB.
    if not any(isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == state["num_classes"]
               for t in state["model"].values()):
        problems.append(f"num_classes={state['num_classes']} is the size of none of its weights")
    if problems:
        raise ValueError(f"{path}: {'; '.join(problems)}; not a dali-has checkpoint")


def check_resumable(path: Path, state: dict, cfg: TrainConfig, classes: list[str] | None) -> None:
    """Refuse to resume the checkpoint `state` (read from `path`) as `cfg` on data with these class folders
    (None: a file list or shards) when the run would silently learn something else: config.json edited in what
    it trains (RESUME_MAY_CHANGE lists what may change), or class folders renamed, added or removed, which
    shifts every label. Checkpoints written before a setting existed are not held to it."""
    saved = state.get("config") or {}
    now = json.loads(json.dumps(cfg.to_dict()))
    differ = [key for key in sorted(set(saved) & set(now)) if key not in RESUME_MAY_CHANGE
              and _trained_by(key, saved[key]) != _trained_by(key, now[key])]
    if differ:
        said = "; ".join(f"{key} {now[key]!r} (trained with {saved[key]!r})" for key in differ)
        raise ValueError(f"{path.parent / CONFIG} differs from the settings {path} was trained with: {said}; "
                         "--resume continues a run as it was trained: restore config.json, or start a new run")
    trained = state.get("classes")
    if trained is not None and classes is not None and trained != classes:
        gone, new = sorted(set(trained) - set(classes)), sorted(set(classes) - set(trained))
        change = f"missing {gone[:3]}, new {new[:3]}" if gone or new else "in another order"
        raise ValueError(f"the class folders of {cfg.data} are not the ones {path} was trained on ({change}): every "
                         "label after the first change would name another class; resume on the data it was "
                         "trained on, or start a new run")


def _trained_by(key: str, value):
    """A config value as far as it decides what is learned: validation's files may have moved."""
    if key == "val" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in _MOVABLE_VAL_PATHS}
    return value


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
    except (ValueError, UnicodeDecodeError, RecursionError) as error:  # RecursionError: nested too deep
        raise ValueError(f"{path} is not valid JSON ({type(error).__name__}: {_first_line(error)})") from None
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
        cfg = TrainConfig.from_dict({**saved, "out": str(run_dir.resolve())})
        with torch.device("meta"):  # the model options are checked where the model is built: shapes only, here
            cfg.build_model(2)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return cfg


class TrainedModel(NamedTuple):
    model: torch.nn.Module  # in eval mode
    cfg: TrainConfig
    classes: Optional[list[str]]  # the training set's class names by label, when it had them


def load_trained_model(run_dir: str | Path, device: torch.device | str = "cpu",
                       checkpoint: str = CHECKPOINT) -> TrainedModel:
    """The model of a run folder with the weights of `checkpoint` (the latest, or BEST), its config and classes."""
    cfg = load_run_config(run_dir)
    path = Path(run_dir) / checkpoint
    state = load_checkpoint(path)
    model = cfg.build_model(state["num_classes"])
    load_weights(path, model, state["model"])
    return TrainedModel(model.to(device).eval(), cfg, state.get("classes"))
