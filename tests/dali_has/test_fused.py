"""The fused C++/CUDA Hide-and-Seek operator: what the shared oracle suite (test_operator.py) does not cover.

Masks are read back from the output: the images never contain the fill values, so a pixel is hidden iff it
equals the fill. CPU tests use `device_id=None`; the CPU-vs-GPU test carries the `gpu` marker.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from nvidia.dali import backend, fn, pipeline_def, types

from dali_has import HaSConfig, fused, plugin_build, reference
from dali_has.spec import PAPER_P_HIDE, PAPER_PATCH_SIZES
from tests.dali_has.has_harness import assert_checkpoint_resumes, run_graph

SHAPES = [(50, 70), (64, 64), (33, 91), (91, 20)]  # H x W: non-square, different per sample
FILL = (1.4, 2.6, 300.0)  # images hold 10..239: as uint8 the fill becomes (1, 3, 255), still absent


@pytest.fixture
def plugin():
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")


def images_for(shapes, dtype, layout, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(10, 240, size=(h, w, channels)).astype(dtype) for h, w in shapes]
    return imgs if layout == "HWC" else [np.ascontiguousarray(i.transpose(2, 0, 1)) for i in imgs]


def run(images, cfg, *, layout="HWC", iterations=1, seed=1, op_seed=None, device="cpu"):
    """Outputs per iteration (lists of numpy arrays) of the fused op on `images` fed every iteration."""
    return run_graph(lambda x: fused.hide_and_seek_fused(x, cfg, seed=op_seed), images, layout=layout,
                     device=device, seed=seed, iterations=iterations)


def mask_of(y, fill, layout):
    """Hidden pixels, asserting the channels are coupled: a pixel equals the fill on all channels or none."""
    eq = y == (fill if layout == "HWC" else fill[:, None, None])
    axis = 2 if layout == "HWC" else 0
    np.testing.assert_array_equal(eq.any(axis=axis), eq.all(axis=axis))
    return eq.all(axis=axis)


def test_the_operators_own_defaults_are_the_papers(plugin):
    """C++ cannot import spec.py: the schema's defaults (used by a direct fn.dali_has.HideAndSeek) repeat them."""
    schema = backend.GetSchema("dali_has__HideAndSeek")
    assert tuple(ast.literal_eval(schema.GetArgumentDefaultValueString("patch_sizes"))) == PAPER_PATCH_SIZES
    assert float(schema.GetArgumentDefaultValueString("p_hide")) == PAPER_P_HIDE


def test_scalar_fill_and_other_channel_counts(plugin):
    images = images_for([(20, 30)] * 4, np.float32, "CHW", channels=1) + \
        images_for([(20, 30)] * 4, np.float32, "CHW", channels=4)
    cfg = HaSConfig(patch_sizes=(6,), p_hide=0.5, fill=-2.0)
    (batch,) = run(images, cfg, layout="CHW")
    for x, y in zip(images, batch):
        mask = mask_of(y, np.full(x.shape[0], -2.0, np.float32), "CHW")
        reference.infer_cells(mask, cfg.patch_sizes)
        np.testing.assert_array_equal(y, reference.apply_mask(x, mask, -2.0, "CHW"))


def test_fixed_seed_reproduces_and_other_seeds_differ(plugin):
    images = images_for(SHAPES, np.float32, "HWC")
    cfg = HaSConfig(patch_sizes=(4, 8), p_hide=0.5, fill=FILL)

    def same(a, b):
        return all(np.array_equal(x, y) for xs, ys in zip(a, b) for x, y in zip(xs, ys))

    first = run(images, cfg, seed=7, iterations=2)
    assert same(first, run(images, cfg, seed=7, iterations=2))
    assert not same(first, run(images, cfg, seed=8, iterations=2))
    # An explicit operator seed overrides the pipeline's.
    assert same(run(images, cfg, seed=1, op_seed=42), run(images, cfg, seed=2, op_seed=42))


@pytest.mark.filterwarnings("ignore:Checkpointing enabled in a pipeline with external source")
def test_checkpoint_resumes_the_mask_sequence(plugin):
    images = images_for([(40, 40)] * 4, np.uint8, "HWC")
    cfg = HaSConfig(patch_sizes=(8,), p_hide=0.5, fill=0)

    assert_checkpoint_resumes(lambda x: fused.hide_and_seek_fused(x, cfg), images)


@pytest.mark.parametrize("kwargs, layout, image, message", [
    ({"p_hide": 1.5}, "HWC", np.zeros((8, 8, 3), np.uint8), "`p_hide` = 1.5"),
    ({"p_hide": float("nan")}, "HWC", np.zeros((8, 8, 3), np.uint8), "`p_hide` = nan"),
    ({"patch_sizes": [8, -1]}, "HWC", np.zeros((8, 8, 3), np.uint8), "`patch_sizes` contains -1"),
    ({"patch_sizes": []}, "HWC", np.zeros((8, 8, 3), np.uint8), "`patch_sizes` is empty"),
    ({"fill": []}, "HWC", np.zeros((8, 8, 3), np.uint8), "`fill` is empty"),
    ({"fill": [1.0, 2.0]}, "HWC", np.zeros((8, 8, 3), np.uint8), "`fill` has 2 values but sample 0 has 3"),
    ({}, "DHW", np.zeros((8, 8, 3), np.uint8), 'layout is "DHW"'),
    ({}, "HW", np.zeros((8, 8), np.uint8), 'layout is "HW"'),
    ({}, "HWC", np.zeros((8, 8, 3), np.int16), "type int16 is not supported"),
])
def test_bad_arguments_and_inputs_are_rejected_by_name(kwargs, layout, image, message, plugin):
    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        return fn.dali_has.hide_and_seek(fn.external_source(source=lambda: [image], batch=True, layout=layout),
                                         **kwargs)

    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        p = pipe()
        p.build()
        p.run()


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["HWC", "CHW"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float32])
def test_gpu_kernel_equals_cpu_kernel(dtype, layout, plugin):
    if not fused.gpu_available():
        pytest.skip(f"the plugin's GPU kernel cannot run here: {fused.gpu_unavailable_reason()}")
    images = images_for(SHAPES * 4, dtype, layout)
    cfg = HaSConfig(patch_sizes=(0, 1, 7, 16, 56), p_hide=0.4, fill=FILL)
    cpu = run(images, cfg, layout=layout, iterations=3, seed=11)
    gpu = run(images, cfg, layout=layout, iterations=3, seed=11, device="gpu")
    for cpu_batch, gpu_batch in zip(cpu, gpu):
        for x, y in zip(cpu_batch, gpu_batch):
            assert y.dtype == x.dtype == dtype
            np.testing.assert_array_equal(x, y)


@pytest.mark.gpu
@pytest.mark.parametrize("shapes, channels, layout", [
    ([(2000, 1500), (1500, 2000)], 3, "HWC"),  # 3 M pixels: the kernel's grid-stride loop wraps many times
    ([(2000, 1500)], 3, "CHW"),
    ([(12, 9), (7, 13)] * 550, 3, "HWC"),  # 1,100 samples: one block per sample, blockIdx.y up to 1,099
    ([(40, 30), (17, 61)] * 2, 1, "HWC"),
    ([(40, 30), (17, 61)] * 2, 4, "CHW"),
])
def test_gpu_kernel_equals_cpu_kernel_at_the_extremes(shapes, channels, layout, plugin):
    if not fused.gpu_available():
        pytest.skip(f"the plugin's GPU kernel cannot run here: {fused.gpu_unavailable_reason()}")
    images = images_for(shapes, np.uint8, layout, channels=channels)
    cfg = HaSConfig(patch_sizes=(0, 1, 5, 56, 300), p_hide=0.5, fill=2.5)
    cpu = run(images, cfg, layout=layout, iterations=2, seed=12)
    gpu = run(images, cfg, layout=layout, iterations=2, seed=12, device="gpu")
    hidden = 0
    for cpu_batch, gpu_batch in zip(cpu, gpu):
        for x, y, image in zip(cpu_batch, gpu_batch, images):
            assert y.dtype == x.dtype == np.uint8 and y.shape == image.shape
            np.testing.assert_array_equal(x, y)
            hidden += int((y == 2).all(axis=2 if layout == "HWC" else 0).any())  # fill 2.5 -> 2 (half to even)
    assert hidden > 0


@pytest.mark.parametrize("kernel, driver, problem", [
    (13000, None, "no NVIDIA driver"),
    (13000, 12080, "driver supports CUDA 12.8, the GPU kernel was built with CUDA 13.0"),
    (13000, 13000, None),
    (13000, 13020, None),  # minor-version compatible
    (12080, 13000, None),
    (None, 12080, None),
])
def test_driver_problem_names_both_versions(kernel, driver, problem):
    found = fused.driver_problem(kernel, driver)
    assert found is None if problem is None else problem in found


@pytest.mark.parametrize("oldest, capabilities, problem", [
    (75, [70, 90], "GPU 0 has compute capability 7.0, older than the 7.5 the GPU kernel was built for"),
    (75, [90, 61], "GPU 1 has compute capability 6.1"),
    (75, [75, 90], None), (75, [], None), (75, None, None), (None, [70], None),
])
def test_architecture_problem_names_the_gpu_and_both_architectures(oldest, capabilities, problem):
    found = fused.architecture_problem(oldest, capabilities)
    assert found is None if problem is None else problem in found


def test_the_oldest_architecture_is_read_from_nvccs_list():
    assert plugin_build.oldest_arch_of("compute_75\ncompute_80\ncompute_86\ncompute_120\n") == 75
    assert plugin_build.oldest_arch_of("nvcc fatal: unknown option") is None


def test_gpu_kernel_is_used_only_when_the_driver_and_the_gpus_can_run_it(plugin, monkeypatch):
    """A card older than nvcc's oldest architecture (a V100 under CUDA 13) passed the driver check and would have
    failed at the kernel's first launch ("no kernel image") instead of falling back."""
    built = plugin_build.build()
    if not built.gpu:
        pytest.skip(f"plugin built without its CUDA kernel: {built.gpu_reason}")
    assert built.cuda_version is not None and built.cuda_version >= 1000 and built.oldest_arch >= 50
    for driver, gpus, usable in ((None, None, False), (built.cuda_version - 1000, None, False),
                                 (built.cuda_version, None, True), (built.cuda_version, [built.oldest_arch], True),
                                 (built.cuda_version, [built.oldest_arch - 5], False)):
        monkeypatch.setattr(fused, "driver_cuda_version", lambda driver=driver: driver)
        monkeypatch.setattr(fused, "device_capabilities", lambda gpus=gpus: gpus)
        monkeypatch.setattr(fused, "_state", {})
        assert fused.load()  # the CPU kernel is usable whatever the driver
        assert fused.gpu_available() is usable
        assert (fused.gpu_unavailable_reason() is None) is usable


def test_gpu_input_falls_back_to_the_composition_saying_why(plugin, monkeypatch):
    from dali_has import operator

    monkeypatch.setattr(fused, "driver_cuda_version", lambda: None)
    monkeypatch.setattr(fused, "_state", {})
    monkeypatch.setattr(operator, "_warned", False)

    @pipeline_def(batch_size=2, num_threads=1, device_id=0)  # defined, never built: no GPU needed
    def pipe():
        images = fn.external_source(name="x", dtype=types.UINT8, ndim=3, layout="HWC")
        return operator.hide_and_seek(images.gpu(), patch_sizes=(8,))

    with pytest.warns(RuntimeWarning, match="no NVIDIA driver found.*using the composition"):
        pipe()


@pytest.mark.slow
def test_build_is_cached_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("DALI_HAS_CACHE", str(tmp_path))
    monkeypatch.setattr(plugin_build, "_find_nvcc", lambda: None)  # CPU-only: the path without CUDA, quicker
    first = plugin_build.build()
    assert first.path.is_file() and first.path.parent.parent == tmp_path
    assert not first.gpu and "nvcc not found" in first.gpu_reason
    mtime = first.path.stat().st_mtime_ns
    assert plugin_build.build().path.stat().st_mtime_ns == mtime  # second call: from the cache


def test_without_a_compiler_the_package_still_imports_and_reports_why(tmp_path):
    env = dict(os.environ, DALI_HAS_CACHE=str(tmp_path), CXX="/nonexistent/g++")
    code = ("from dali_has import fused; import dali_has; "
            "print(fused.load()); print(fused.unavailable_reason())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    loaded, reason = out.stdout.strip().splitlines()
    assert loaded == "False" and "no C++ compiler found" in reason
