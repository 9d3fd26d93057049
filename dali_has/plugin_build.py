"""Compile the C++/CUDA Hide-and-Seek DALI plugin on first use, into a per-user cache.

Why at first use rather than at install: the plugin must match the installed DALI's headers and ABI, and
building it inside pip's isolated build environment would mean downloading DALI (~400 MB) a second time.
The cache key hashes the sources, this file (it holds the flags), the DALI version, the compilers' paths and
versions, DALI's compile and link flags and the CUDA headers' folder, so any change of sources or toolchain
builds afresh in a new folder. A file lock serializes concurrent builders (pytest-xdist workers, torchrun
ranks) and the library appears by an atomic rename, so no process ever loads a half-written file. build.json
records the library's size and SHA-256: a library damaged later (a cache copied in part, a restored CI cache) is
built again rather than loaded (a truncated one killed the process with SIGBUS inside dlopen). A cache that holds
an intact build is used without writing to it, so a read-only one serves.

A build that fails for a reason that will recur (the compiler rejects the sources, the linker cannot resolve
them) leaves a FAILED marker, so other processes do not repeat it; `DALI_HAS_REBUILD=1` or `dali-has
build-plugin --rebuild` retries it. A build that fails for a passing reason (a compiler killed by a signal or
out of memory, a full disk, a timeout) leaves no marker: the next use tries again.

The CPU operators are always built. The GPU operators and their CUDA kernels are added when nvcc is found and
compiles them (all or none); otherwise the library is CPU-only and `BuildResult.gpu_reason` says why. The CUDA
runtime is linked statically, so the kernels run on any driver new enough for nvcc's CUDA version
(`BuildResult.cuda_version`; `fused` checks it at load) and on GPUs of the architectures nvcc builds for
(`BuildResult.oldest_arch` and newer; `fused` checks the visible GPUs).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dali_has.cache import CACHE_ENV, cache_root

CSRC = Path(__file__).parent / "csrc"
LIB_NAME = "libdali_has_ops.so"
# The CPU operators (and the rule they share), always built; the GPU operators (compiled like the CPU ones) and
# their CUDA kernels (compiled by nvcc) join them when nvcc is found.
CPU_SOURCES = ("hide_and_seek_rule.cc", "hide_and_seek_cpu.cc", "resize_mirror_normalize_hide_cpu.cc",
               "file_label_cpu.cc")
GPU_SOURCES = ("hide_and_seek_gpu.cc", "resize_mirror_normalize_hide_gpu.cc")
CUDA_SOURCES = ("hide_and_seek_gpu.cu", "resize_mirror_normalize_hide_gpu.cu")
# -ffp-contract=off: no multiply-add fused into one rounding, on hosts whose baseline has FMA (aarch64) too, so the
# CPU operators round as the CUDA kernels do (resize_filter.h keeps nvcc from fusing them).
CXX_FLAGS = ("-std=c++20", "-O3", "-fPIC", "-ffp-contract=off")
FAILED = "FAILED"
BUILDING = "building-"  # the prefix of a build's temporary folder in the cache
# Words of compilers and linkers whose failure says nothing about the sources: the next try may succeed.
_PASSING_FAILURES = ("No space left on device", "Killed signal terminated program", "virtual memory exhausted",
                     "Cannot allocate memory", "out of memory", "Disk quota exceeded",
                     "Resource temporarily unavailable")


class PluginBuildError(RuntimeError):
    """The plugin cannot be built here; the message is one line for a warning."""


@dataclass(frozen=True)
class BuildResult:
    path: Path
    gpu: bool                # the CUDA kernel is in the library
    gpu_reason: str | None   # why not, when it is not
    cuda_version: int | None  # CUDA version of the kernel's runtime, as the driver API writes it (13000 = 13.0)
    oldest_arch: int | None = None  # the oldest GPU architecture the kernel was built for (75 = sm_75), when built


REBUILD_ENV = "DALI_HAS_REBUILD"  # "1": retry a build that failed before


def build(rebuild: bool = False) -> BuildResult:
    """Return the cached plugin, building it first if needed. Raises PluginBuildError.

    rebuild: build again even when a library or a FAILED marker is cached. With $DALI_HAS_REBUILD=1 a cached
    failure is retried (a cached library is kept, so the ranks of one job do not rebuild it one after another).
    """
    tools = _Toolchain.find()
    key_dir = cache_root() / tools.cache_key()
    failed = key_dir / FAILED
    if not rebuild and (built := _intact_build(key_dir)) is not None:  # no lock: a read-only cache serves
        return built
    try:
        key_dir.mkdir(parents=True, exist_ok=True)
        # Not through a link: open(..., "w") truncated whatever file a link put there pointed to.
        lock = os.fdopen(os.open(key_dir / ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644), "w")
    except OSError as error:
        if failed.exists() and not rebuild and os.environ.get(REBUILD_ENV) != "1":
            raise PluginBuildError(failed.read_text().strip()) from None
        held = "a library that does not match its build.json" if (key_dir / LIB_NAME).exists() else "no build"
        raise PluginBuildError(f"the plugin cache {key_dir} holds {held} and cannot be written ({error.strerror}); "
                               f"set {CACHE_ENV} to a folder you can write") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if rebuild or os.environ.get(REBUILD_ENV) == "1":
            failed.unlink(missing_ok=True)
        if rebuild or (_intact_build(key_dir) is None and not failed.exists()):
            (key_dir / LIB_NAME).unlink(missing_ok=True)  # damaged or asked for: built again below
            for stale in key_dir.glob(BUILDING + "*"):  # a build killed midway left its objects (this lock is held)
                shutil.rmtree(stale, ignore_errors=True)
            _build_into(key_dir, tools)
    if failed.exists():
        raise PluginBuildError(failed.read_text().strip())
    built = _intact_build(key_dir)
    if built is None:  # changed between the build and this read: another process, or the disk
        raise PluginBuildError(f"the plugin in {key_dir} does not match its build.json right after its build; "
                               "run `dali-has build-plugin --rebuild`")
    return built


def _intact_build(key_dir: Path) -> BuildResult | None:
    """The cached build when its library is the one build.json describes (size, SHA-256), else None."""
    lib, described = key_dir / LIB_NAME, key_dir / "build.json"
    if not described.is_file():  # missing, or a FIFO (reading it waited for ever)
        return None
    try:
        info = json.loads(described.read_text())
        if lib.stat().st_size != info["size"] or _sha256(lib) != info["sha256"]:
            return None
        return BuildResult(lib, info["gpu"], info["gpu_reason"], info["cuda_version"], info["oldest_arch"])
    except (OSError, ValueError, TypeError, KeyError, RecursionError):  # unreadable, not JSON, of an older version
        return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()  # ~4 MB: about 10 ms


def cache_dir() -> Path:
    """The folder of this toolchain's build (library, build.log, FAILED marker), whether built or not."""
    return cache_root() / _Toolchain.find().cache_key()


@dataclass(frozen=True)
class _Toolchain:
    cxx: str
    nvcc: str | None
    cuda_include: Path
    dali_version: str
    compile_flags: tuple[str, ...]
    link_flags: tuple[str, ...]
    dali_lib_dir: str

    @classmethod
    def find(cls) -> _Toolchain:
        import nvidia.dali as dali
        from nvidia.dali import sysconfig

        cxx = shutil.which(os.environ.get("CXX", "g++"))
        if cxx is None:
            raise PluginBuildError(f"no C++ compiler found ({os.environ.get('CXX', 'g++')!r}); "
                                   "install g++ or set CXX")
        nvcc = _find_nvcc()
        include = _find_cuda_include(nvcc)
        if include is None:
            raise PluginBuildError("cuda_runtime.h not found (DALI's headers need it even for CPU "
                                   "operators); install the CUDA toolkit or the nvidia-cuda-runtime wheel")
        return cls(cxx, nvcc, include, dali.__version__, tuple(sysconfig.get_compile_flags()),
                   tuple(sysconfig.get_link_flags()), sysconfig.get_lib_dir())

    def cache_key(self) -> str:
        h = hashlib.sha256()
        for src in sorted(p for p in CSRC.iterdir() if p.suffix in (".h", ".cc", ".cu")):
            h.update(src.name.encode() + src.read_bytes())
        h.update(Path(__file__).read_bytes())
        h.update(repr((self.cxx, self.nvcc, self.dali_version, self.compile_flags, self.link_flags,
                       str(self.cuda_include))).encode())
        for tool in (self.cxx, self.nvcc):
            h.update(_version(tool).encode() if tool else b"none")
        return h.hexdigest()[:16]


def _find_nvcc() -> str | None:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def _find_cuda_include(nvcc: str | None) -> Path | None:
    candidates = [Path(nvcc).resolve().parent.parent / "include"] if nvcc else []
    candidates.append(Path("/usr/local/cuda/include"))
    try:  # pip's CUDA runtime wheels (torch depends on them)
        import nvidia

        for root in nvidia.__path__:
            candidates += [Path(root) / "cu13" / "include", Path(root) / "cuda_runtime" / "include"]
    except ImportError:
        pass
    return next((c for c in candidates if (c / "cuda_runtime.h").is_file()), None)


def cuda_version_of(nvcc_version: str) -> int | None:
    """13000 for nvcc's "release 13.0, V13.0.88": the number the CUDA driver API uses for versions."""
    match = re.search(r"release (\d+)\.(\d+)", nvcc_version)
    return int(match[1]) * 1000 + int(match[2]) * 10 if match else None


def oldest_arch_of(listed: str) -> int | None:
    """The oldest architecture in `nvcc --list-gpu-arch`'s output (compute_75 ... : 75); `-arch=all-major` builds
    SASS for it (CUDA 13 builds no Volta or Pascal kernel, though its driver still runs those cards)."""
    found = [int(arch) for arch in re.findall(r"compute_(\d+)", listed)]
    return min(found) if found else None


def _version(tool: str) -> str:
    try:
        return subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _build_into(key_dir: Path, tools: _Toolchain) -> None:
    """Compile in a temporary directory; publish build.json, then the library, by rename."""
    with tempfile.TemporaryDirectory(dir=key_dir, prefix=BUILDING) as tmp:
        tmp = Path(tmp)
        cxx = [tools.cxx, *CXX_FLAGS, *tools.compile_flags, f"-I{tools.cuda_include}",
               f"-I{CSRC}", "-c"]
        cpu_objects = [str(tmp / Path(src).with_suffix(".o")) for src in CPU_SOURCES]
        jobs = {src: cxx + [str(CSRC / src), "-o", obj] for src, obj in zip(CPU_SOURCES, cpu_objects)}
        gpu_objects = [str(tmp / Path(src).with_suffix(".o")) for src in GPU_SOURCES]
        cuda_objects = [str(tmp / (Path(src).stem + "_cuda.o")) for src in CUDA_SOURCES]
        if tools.nvcc:
            jobs.update({src: cxx + [str(CSRC / src), "-o", obj] for src, obj in zip(GPU_SOURCES, gpu_objects)})
            # all-major: SASS for each major architecture nvcc supports (minor versions run it) plus
            # PTX of the newest for future GPUs; small kernels, a few seconds each.
            jobs.update({src: [tools.nvcc, "-std=c++17", "-O3", "-arch=all-major", "-ccbin", tools.cxx,
                               "-Xcompiler", "-fPIC", f"-I{CSRC}", "-c", str(CSRC / src), "-o", obj]
                         for src, obj in zip(CUDA_SOURCES, cuda_objects)})
        with ThreadPoolExecutor(len(jobs)) as pool:  # the compilers run in parallel
            results = dict(zip(jobs, pool.map(_run, jobs.values())))

        log = "\n\n".join(f"$ {' '.join(jobs[k])}\n{out}" for k, (_, out) in results.items())
        (key_dir / "build.log").write_text(log)
        _unless_passing(key_dir, [out for ok, out in results.values() if not ok])
        failed_sources = [src for src in CPU_SOURCES if not results[src][0]]
        if failed_sources:
            _fail(key_dir, f"compiling the CPU operators failed ({', '.join(failed_sources)})")

        link = [tools.cxx, "-shared", "-o", str(tmp / LIB_NAME), *cpu_objects, *tools.link_flags,
                "-ldali_core", f"-Wl,-rpath,{tools.dali_lib_dir}", "-Wl,--no-undefined"]
        gpu_reason = None
        if tools.nvcc is None:
            gpu_reason = "nvcc not found (set CUDA_HOME); the GPU kernel was not built"
        elif not all(results[src][0] for src in GPU_SOURCES + CUDA_SOURCES):
            gpu_reason = f"compiling the GPU kernel failed, see {key_dir / 'build.log'}"
        else:
            # cudart is linked statically: the library then needs only a driver new enough for nvcc's
            # CUDA version, not a matching libcudart on the library path.
            gpu_link = link + gpu_objects + cuda_objects + [
                f"-L{Path(tools.nvcc).resolve().parent.parent / 'lib64'}", "-lcudart_static", "-ldl", "-lrt",
                "-lpthread"]
            ok, out = _run(gpu_link)
            if not ok:
                gpu_reason = f"linking the GPU kernel failed, see {key_dir / 'build.log'}"
                (key_dir / "build.log").write_text(f"{log}\n\n$ {' '.join(gpu_link)}\n{out}")
                _unless_passing(key_dir, [out])
        if gpu_reason is not None:
            ok, out = _run(link)
            if not ok:
                (key_dir / "build.log").write_text(f"{log}\n\n$ {' '.join(link)}\n{out}")
                _unless_passing(key_dir, [out])
                _fail(key_dir, "linking the CPU operators failed")

        info = {"gpu": gpu_reason is None, "gpu_reason": gpu_reason,
                "cuda_version": cuda_version_of(_version(tools.nvcc)) if gpu_reason is None else None,
                "oldest_arch": oldest_arch_of(_run([tools.nvcc, "--list-gpu-arch"])[1]) if gpu_reason is None
                else None,
                "size": (tmp / LIB_NAME).stat().st_size, "sha256": _sha256(tmp / LIB_NAME)}
        (tmp / "build.json").write_text(json.dumps(info))
        os.replace(tmp / "build.json", key_dir / "build.json")
        os.replace(tmp / LIB_NAME, key_dir / LIB_NAME)  # last: the library's presence means "built"


_PASSING = "[passing failure] "  # how _run marks a failure that says nothing about the sources


def _run(cmd: list[str]) -> tuple[bool, str]:
    """(succeeded, output); the output of a failure that may not recur starts with _PASSING."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return False, f"{_PASSING}timed out after 600 s"
    except (OSError, subprocess.SubprocessError) as e:  # e.g. cannot fork: out of memory, too many processes
        return False, f"{_PASSING}{e}"
    out = p.stdout + p.stderr
    if p.returncode < 0:
        return False, f"{_PASSING}killed by signal {-p.returncode}\n{out}"
    if p.returncode != 0 and any(words in out for words in _PASSING_FAILURES):
        return False, f"{_PASSING}{out}"
    return p.returncode == 0, out


def _unless_passing(key_dir: Path, failures: list[str]) -> None:
    """Stop without a FAILED marker when a failure may not recur (killed, out of memory or disk, timeout)."""
    passing = [out for out in failures if out.startswith(_PASSING)]
    if passing:
        first = (passing[0][len(_PASSING):].strip().splitlines() or ["no output"])[0]
        raise PluginBuildError(f"building the plugin was interrupted ({first}); it is tried again on next use, "
                               f"see {key_dir / 'build.log'}")


def _fail(key_dir: Path, what: str) -> None:
    """Remember the failure, so other processes do not rebuild the same sources with the same tools."""
    reason = (f"{what}, see {key_dir / 'build.log'} (fix it, then retry with `dali-has build-plugin --rebuild` "
              f"or {REBUILD_ENV}=1)")
    (key_dir / FAILED).write_text(reason)
    raise PluginBuildError(reason)
