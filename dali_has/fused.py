"""The fused Hide-and-Seek DALI operator (C++ CPU kernel, CUDA kernel when built): loading and calling it.

`load()` builds the plugin on first use (see `plugin_build`) and registers it with DALI, after which its
operators are `fn.dali_has.hide_and_seek` and `fn.dali_has.resize_mirror_normalize_hide` (called through
`dali_has.resize_mirror_normalize`), each with a CPU and, when built, a GPU backend. When it cannot be built,
`load()` is False and `unavailable_reason()` says why in one line, for the caller's warning.

The CUDA kernels are usable when they were built *and* this machine's NVIDIA driver can run them: the plugin links
the CUDA runtime of the nvcc that built it statically, which needs a driver for that CUDA major version (CUDA 13:
driver 580 or newer). An older driver would accept the library and fail at the kernel's first launch, so the
driver is checked here, once, and GPU pipelines fall back to the composition with a warning that says why. So are
the visible GPUs' architectures: nvcc builds kernels for its oldest supported architecture and newer only (CUDA 13:
Turing, sm_75), and an older card (a V100) would fail at the first launch with "no kernel image".
"""
from __future__ import annotations

import ctypes
import threading

from dali_has.spec import HaSConfig

_lock = threading.Lock()
_state: dict = {}  # filled once by load(): ok, reason, gpu, gpu_reason


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
    """True when the loaded plugin includes the CUDA kernel and the NVIDIA driver can run it."""
    return load() and _state["gpu"]


def gpu_unavailable_reason() -> str | None:
    """Why the CUDA kernel cannot be used (one line), or None when it can."""
    return _state["gpu_reason"] if load() else unavailable_reason()


def hide_and_seek_fused(images, cfg: HaSConfig, *, seed: int | None = None):
    """Hide-and-Seek on a batch of HWC or CHW images (uint8, float16 or float32) in one operator.

    images: a DALI DataNode on the CPU, or on the GPU when `gpu_available()`.
    seed: the operator's own seed; by default DALI derives it from the pipeline's seed.
    Returns the masked batch, same shape, type and layout.
    """
    if not load():
        raise RuntimeError(f"the fused Hide-and-Seek operator is unavailable: {unavailable_reason()}")
    if getattr(images, "device", "cpu") == "gpu" and not gpu_available():
        raise RuntimeError(f"the fused Hide-and-Seek operator cannot run on the GPU: {gpu_unavailable_reason()}")
    from nvidia.dali import fn

    kwargs = {} if seed is None else {"seed": seed}
    return fn.dali_has.hide_and_seek(images, patch_sizes=list(cfg.patch_sizes), p_hide=cfg.p_hide,
                                     fill=list(cfg.fill), **kwargs)


def driver_cuda_version() -> int | None:
    """The CUDA version the installed NVIDIA driver supports (13000 = 13.0), None without a driver."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return version.value


def driver_problem(kernel_cuda_version: int | None, driver_version: int | None) -> str | None:
    """Why a driver reporting `driver_version` cannot run a kernel built with CUDA `kernel_cuda_version`
    (None: nvcc's version was not readable, so only the driver's presence is checked)."""
    if driver_version is None:
        return "no NVIDIA driver found (libcuda.so.1 cannot be loaded)"
    # Within a major version CUDA is minor-version compatible: a 13.x runtime runs on any 13.y driver.
    if kernel_cuda_version is not None and driver_version // 1000 < kernel_cuda_version // 1000:
        return (f"the NVIDIA driver supports CUDA {_dotted(driver_version)}, the GPU kernel was built with CUDA "
                f"{_dotted(kernel_cuda_version)}: update the driver (CUDA 13 needs driver 580 or newer) or build "
                "the plugin with an older nvcc (set CUDA_HOME)")
    return None


def device_capabilities() -> list[int] | None:
    """Compute capability of each GPU CUDA sees (major * 10 + minor: 90 = 9.0), None when the driver cannot say.
    Initializes the driver (cuInit), so it is asked only where a driver is installed."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return None
    found = []
    for ordinal in range(count.value):
        device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        if (libcuda.cuDeviceGet(ctypes.byref(device), ordinal) != 0
                or libcuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device) != 0
                or libcuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device) != 0):
            return None
        found.append(major.value * 10 + minor.value)
    return found


_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR


def architecture_problem(oldest_arch: int | None, capabilities: list[int] | None) -> str | None:
    """Why the kernel, built for `oldest_arch` and newer, cannot run on every GPU in `capabilities` (None where
    either is unknown: nothing to check)."""
    too_old = [(ordinal, cc) for ordinal, cc in enumerate(capabilities or ()) if oldest_arch and cc < oldest_arch]
    if not too_old:
        return None
    ordinal, cc = too_old[0]
    return (f"GPU {ordinal} has compute capability {cc // 10}.{cc % 10}, older than the {oldest_arch // 10}."
            f"{oldest_arch % 10} the GPU kernel was built for (nvcc's oldest): build the plugin with an nvcc that "
            "still supports it (CUDA 12 for Volta and Pascal; set CUDA_HOME, then `dali-has build-plugin --rebuild`)")


def _dotted(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def _load_once() -> dict:
    from dali_has import plugin_build

    try:
        built = plugin_build.build()
        from nvidia.dali import plugin_manager

        plugin_manager.load_library(str(built.path))
    except (plugin_build.PluginBuildError, RuntimeError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"ok": False, "reason": reason, "gpu": False, "gpu_reason": reason}
    gpu_reason = built.gpu_reason
    if built.gpu:
        gpu_reason = (driver_problem(built.cuda_version, driver_cuda_version())
                      or architecture_problem(built.oldest_arch, device_capabilities()))
    return {"ok": True, "reason": None, "gpu": gpu_reason is None, "gpu_reason": gpu_reason}
