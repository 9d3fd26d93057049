"""The plugin build's failure memory: failures that will recur are remembered until a rebuild is asked for,
passing ones (a killed compiler, a full disk, a timeout) are not; the cache key covers sources and toolchain."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from dali_has import plugin_build
from train.cli import main

TOOLS = plugin_build._Toolchain(cxx="c++", nvcc=None, cuda_include=Path("/nonexistent/include"), dali_version="2.4",
                                compile_flags=("-I/dali",), link_flags=("-L/dali",), dali_lib_dir="/dali")


class FakeCompiler:
    """Stands in for `_run`: every command fails with `output`, or succeeds and writes its -o file."""

    def __init__(self, output: str | None):
        self.output, self.calls = output, 0

    def __call__(self, cmd):
        self.calls += 1
        if self.output is not None:
            return False, self.output
        Path(cmd[cmd.index("-o") + 1]).write_bytes(b"built")
        return True, ""


@pytest.fixture
def fake_build(tmp_path, monkeypatch):
    monkeypatch.setenv("DALI_HAS_CACHE", str(tmp_path))
    monkeypatch.delenv(plugin_build.REBUILD_ENV, raising=False)
    monkeypatch.setattr(plugin_build._Toolchain, "find", classmethod(lambda cls: TOOLS))
    monkeypatch.setattr(plugin_build, "_version", lambda tool: f"{tool} 1.0")

    def use(compiler: FakeCompiler) -> FakeCompiler:
        monkeypatch.setattr(plugin_build, "_run", compiler)
        return compiler

    return use


def test_a_compile_error_is_remembered_until_a_rebuild_is_asked_for(fake_build, monkeypatch):
    broken = fake_build(FakeCompiler("hide_and_seek_cpu.cc:1: error: expected ';'"))
    with pytest.raises(plugin_build.PluginBuildError, match="compiling the CPU operators failed.*--rebuild"):
        plugin_build.build()
    compiles = len(plugin_build.CPU_SOURCES)
    assert (plugin_build.cache_dir() / plugin_build.FAILED).is_file() and broken.calls == compiles
    with pytest.raises(plugin_build.PluginBuildError):
        plugin_build.build()
    assert broken.calls == compiles  # other processes do not repeat a build that will fail again

    fixed = fake_build(FakeCompiler(None))
    monkeypatch.setenv(plugin_build.REBUILD_ENV, "1")
    assert plugin_build.build().path.read_bytes() == b"built" and fixed.calls == compiles + 1  # and a link
    assert not (plugin_build.cache_dir() / plugin_build.FAILED).exists()
    assert plugin_build.build() and fixed.calls == compiles + 1  # the env retries failures only; the library stays
    monkeypatch.delenv(plugin_build.REBUILD_ENV)
    plugin_build.build(rebuild=True)
    assert fixed.calls == 2 * (compiles + 1)  # an explicit rebuild builds again


@pytest.mark.parametrize("output", [
    "[passing failure] killed by signal 9",
    "[passing failure] timed out after 600 s",
    "[passing failure] c++: fatal error: Killed signal terminated program cc1plus",
])
def test_a_passing_failure_leaves_no_marker_and_the_next_use_retries(fake_build, output):
    interrupted = fake_build(FakeCompiler(output))
    with pytest.raises(plugin_build.PluginBuildError, match="interrupted .* tried again on next use"):
        plugin_build.build()
    assert not (plugin_build.cache_dir() / plugin_build.FAILED).exists()
    fixed = fake_build(FakeCompiler(None))
    compiles = len(plugin_build.CPU_SOURCES)
    assert plugin_build.build().path.is_file() and fixed.calls == compiles + 1 and interrupted.calls == compiles


@pytest.mark.parametrize("command, passing", [
    (["sh", "-c", "kill -9 $$"], True),
    (["sh", "-c", "echo 'cc1plus: No space left on device' >&2; exit 1"], True),
    (["sh", "-c", "echo 'c++: fatal error: Killed signal terminated program cc1plus' >&2; exit 1"], True),
    (["sh", "-c", "echo \"x.cc:1: error: expected ';'\" >&2; exit 1"], False),
    (["/nonexistent/compiler"], True),
])
def test_run_tells_passing_failures_from_real_ones(command, passing):
    ok, out = plugin_build._run(command)
    assert not ok and out.startswith("[passing failure] ") == passing


def test_a_timeout_is_a_passing_failure(monkeypatch):
    def slow(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], 600)

    monkeypatch.setattr(subprocess, "run", slow)
    assert plugin_build._run(["c++"]) == (False, "[passing failure] timed out after 600 s")


def test_the_cache_key_covers_sources_and_toolchain(monkeypatch):
    monkeypatch.setattr(plugin_build, "_version", lambda tool: f"{tool} 1.0")
    key = TOOLS.cache_key()
    assert key == TOOLS.cache_key()
    for changed in (replace(TOOLS, cxx="clang++"), replace(TOOLS, nvcc="/usr/local/cuda/bin/nvcc"),
                    replace(TOOLS, dali_version="2.5"), replace(TOOLS, compile_flags=("-I/other",)),
                    replace(TOOLS, link_flags=()), replace(TOOLS, cuda_include=Path("/other"))):
        assert changed.cache_key() != key
    monkeypatch.setattr(plugin_build, "_version", lambda tool: f"{tool} 2.0")  # same compiler path, upgraded
    assert TOOLS.cache_key() != key


def test_build_plugin_command_says_where_and_what_is_usable(capsys):
    assert main(["build-plugin"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("plugin: ") and out[0].endswith(plugin_build.LIB_NAME) and Path(out[0][8:]).is_file()
    assert out[1] == "CPU operators: usable"
    assert out[2].startswith(("CUDA kernel: usable", "CUDA kernel: not built: ", "CUDA kernel: built, not usable"))


def test_build_plugin_command_reports_a_failure(fake_build, capsys):
    fake_build(FakeCompiler("x.cc:1: error: expected ';'"))
    assert main(["build-plugin"]) == 1
    out = capsys.readouterr().out
    assert "plugin: not built: compiling the CPU operators failed" in out and "composition" in out


@pytest.mark.parametrize("damage", ["truncated library", "other library", "no build.json", "build.json not JSON",
                                    "build.json of an older version", "build.json nested too deep",
                                    "build.json a FIFO"])
def test_a_damaged_cached_build_is_built_again_not_loaded(fake_build, damage):
    """A truncated library (a cache copied in part) killed the process with SIGBUS inside dlopen; a damaged
    build.json raised a JSONDecodeError, a missing one failed every later use."""
    compiler = fake_build(FakeCompiler(None))
    first = plugin_build.build()
    lib, meta = first.path, plugin_build.cache_dir() / "build.json"
    info = json.loads(meta.read_text())
    if damage == "truncated library":
        lib.write_bytes(b"bui")
    elif damage == "other library":
        lib.write_bytes(b"BUILT")  # the same size
    elif damage == "no build.json":
        meta.unlink()
    elif damage == "build.json not JSON":
        meta.write_text("{")
    elif damage == "build.json nested too deep":
        meta.write_text("[" * 100_000 + "]" * 100_000)
    elif damage == "build.json a FIFO":  # reading it waited for ever
        meta.unlink()
        os.mkfifo(meta)
    else:
        meta.write_text(json.dumps({key: info[key] for key in ("gpu", "gpu_reason", "cuda_version")}))
    killed = plugin_build.cache_dir() / (plugin_build.BUILDING + "x")  # what a build killed midway leaves
    killed.mkdir()
    (killed / "hide_and_seek_cpu.o").write_bytes(b"object")
    assert plugin_build.build() == first and lib.read_bytes() == b"built"
    assert compiler.calls == 2 * (len(plugin_build.CPU_SOURCES) + 1)
    assert not killed.exists()  # cleared by the next build


def test_an_intact_cache_is_used_without_writing_to_it_and_an_unwritable_one_is_named(fake_build, monkeypatch):
    compiler = fake_build(FakeCompiler(None))
    built = plugin_build.build()
    (plugin_build.cache_dir() / ".lock").unlink()
    assert plugin_build.build() == built and compiler.calls == len(plugin_build.CPU_SOURCES) + 1
    assert not (plugin_build.cache_dir() / ".lock").exists()  # a read-only cache serves: nothing is written
    monkeypatch.setenv("DALI_HAS_CACHE", "/proc/dali_has")  # no one can create a folder there, root neither
    with pytest.raises(plugin_build.PluginBuildError, match="the plugin cache /proc/dali_has/.* holds no build and "
                                                           "cannot be written.*set DALI_HAS_CACHE to a folder"):
        plugin_build.build()


def test_a_read_only_cache_says_what_it_holds(fake_build, monkeypatch):
    """A damaged library or a remembered failure in a cache that cannot be written was reported only as "cannot
    write the plugin cache"."""
    fake_build(FakeCompiler(None))
    plugin_build.build().path.write_bytes(b"bui")  # damaged
    lock = plugin_build.cache_dir() / ".lock"
    lock.unlink()
    lock.mkdir()  # the lock file cannot be made (as in a read-only folder; root writes in any here)
    with pytest.raises(plugin_build.PluginBuildError, match="holds a library that does not match its "
                                                           "build.json and cannot be written"):
        plugin_build.build()
    lock.rmdir()
    victim = plugin_build.cache_dir().parent / "victim.txt"
    victim.write_text("kept")
    lock.symlink_to(victim)  # open(..., "w") truncated the file a link there pointed to
    with pytest.raises(plugin_build.PluginBuildError, match="cannot be written"):
        plugin_build.build()
    assert victim.read_text() == "kept"
    lock.unlink()
    fake_build(FakeCompiler("x.cc:1: error: expected ';'"))
    with pytest.raises(plugin_build.PluginBuildError, match="compiling the CPU operators failed"):
        plugin_build.build()
    lock.unlink()
    lock.mkdir()
    with pytest.raises(plugin_build.PluginBuildError, match="compiling the CPU operators failed"):
        plugin_build.build()
