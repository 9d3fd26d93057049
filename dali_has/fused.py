"""The fused Hide-and-Seek DALI operator (C++ CPU kernel, CUDA kernel when built): loading and calling it.

`load()` builds the plugin on first use (see `plugin_build`) and registers it with DALI, after which its
operators are `fn.dali_has.hide_and_seek` and `fn.dali_has.resize_mirror_normalize_hide` (CPU only; called
through `dali_has.resize_mirror_normalize`). When it cannot be built, `load()` is False and
`unavailable_reason()` says why in one line, for the caller's warning.
"""
from __future__ import annotations

import threading

from dali_has.spec import HaSConfig

_lock = threading.Lock()
_state: dict = {}  # filled once by load(): ok, reason, gpu, gpu_reason, path


def load() -> bool:
    """Build (if needed) and load the plugin, once per process; thread-safe. True when the op is usable."""
    with _lock:
        if not _state:
            _state.update(_load_once())
        return _state["ok"]


def unavailable_reason() -> str | None:
    """Why the fused operator cannot be used (one line), or None when it can."""
    load()
    return _state["reason"]


def gpu_available() -> bool:
    """True when the loaded plugin includes the CUDA kernel (so the op accepts GPU inputs)."""
    return load() and _state["gpu"]


def gpu_unavailable_reason() -> str | None:
    """Why the CUDA kernel is missing (one line), or None when it is there."""
    return _state["gpu_reason"] if load() else unavailable_reason()


def hide_and_seek_fused(images, cfg: HaSConfig, *, seed: int | None = None):
    """Hide-and-Seek on a batch of HWC or CHW images (uint8, float16 or float32) in one operator.

    images: a DALI DataNode on the CPU, or on the GPU when `gpu_available()`.
    seed: the operator's own seed; by default DALI derives it from the pipeline's seed.
    Returns the masked batch, same shape, type and layout.
    """
    if not load():
        raise RuntimeError(f"the fused Hide-and-Seek operator is unavailable: {unavailable_reason()}")
    if getattr(images, "device", "cpu") == "gpu" and not _state["gpu"]:
        raise RuntimeError(f"the fused Hide-and-Seek operator has no GPU kernel: {_state['gpu_reason']}")
    from nvidia.dali import fn

    kwargs = {} if seed is None else {"seed": seed}
    return fn.dali_has.hide_and_seek(images, patch_sizes=list(cfg.patch_sizes), p_hide=cfg.p_hide,
                                     fill=list(cfg.fill), **kwargs)


def _load_once() -> dict:
    from dali_has import plugin_build

    try:
        built = plugin_build.build()
        from nvidia.dali import plugin_manager

        plugin_manager.load_library(str(built.path))
    except (plugin_build.PluginBuildError, RuntimeError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"ok": False, "reason": reason, "gpu": False, "gpu_reason": reason, "path": None}
    return {"ok": True, "reason": None, "gpu": built.gpu, "gpu_reason": built.gpu_reason, "path": built.path}
