"""The GPU backend of the fused resize + flip + normalize + Hide-and-Seek operator.

Without a GPU: the CUDA kernel's body (`WriteSamplePixel` in resize_mirror_normalize_hide_kernel.h, what each GPU
thread runs for its pixel) is compiled for the host by the test (`resize_kernel_host.cc`) and run over every
output pixel; its output must equal the CPU operator's bit for bit, and its hidden cells must be the ones the
Hide-and-Seek rule's hash picks (an independent numpy version of it). With a GPU (`gpu` marker): the operator on
GPU data equals the CPU operator bit for bit, draws included.
"""
import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types

from dali_has import fused, plugin_build, reference
from tests.dali_has.test_resize_mirror_normalize import FILL, MEAN, SHAPES, SIZE, STD, mask_of, op, run, windows

pytestmark = pytest.mark.fused

HARNESS = "resize_kernel_host.cc"
ELEMENTS = {types.FLOAT: (np.float32, np.uint32), types.FLOAT16: (np.float16, np.uint16)}


@pytest.fixture(autouse=True)
def plugin():
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")


@pytest.fixture(scope="module")
def kernel_on_host(tmp_path_factory):
    """The kernel body built for the host with the plugin's compiler and flags (no multiply-add contraction, as
    for the CPU operator)."""
    try:
        tools = plugin_build._Toolchain.find()
    except plugin_build.PluginBuildError as e:
        pytest.skip(str(e))
    lib = tmp_path_factory.mktemp("kernel_on_host") / "kernel_on_host.so"
    subprocess.run([tools.cxx, *plugin_build.CXX_FLAGS, "-shared", f"-I{tools.cuda_include}",
                    f"-I{plugin_build.CSRC}", str(Path(__file__).parent / HARNESS), "-o", str(lib)], check=True)
    so = ctypes.CDLL(str(lib))
    i32, i64, u32, u64, ptr = ctypes.c_int32, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_void_p
    so.write_sample.argtypes = [ptr, i64, i32, i32, i32, i32, i32, ptr, i32, i32, i32, u32, u64, u64, ptr, ptr,
                                i32, i32]
    so.hide_threshold.argtypes, so.hide_threshold.restype = [ctypes.c_double], u64
    return so


def on_host(so, image, window, size, mirror, dtype, layout, table, fill, cell=0, key=0, p_hide=0.0):
    """One sample through the kernel body: output (size, dtype, layout) of `window` ((y, x), (h, w)) of image."""
    h, w, c = image.shape
    (wy, wx), (wh, ww) = window
    value_type, bits = ELEMENTS[dtype]
    shape = (c, *size) if layout == "CHW" else (*size, c)
    out = np.zeros(shape, bits)
    image = np.ascontiguousarray(image)
    table = np.ascontiguousarray(np.asarray(table, value_type).view(bits))
    fill = np.ascontiguousarray(np.asarray(fill, value_type).view(bits))
    so.write_sample(image.ctypes.data, w, c, wy, wx, wh, ww, out.ctypes.data, size[0], size[1], int(mirror), cell,
                    key, so.hide_threshold(p_hide), table.ctypes.data, fill.ctypes.data, out.itemsize,
                    int(layout == "CHW"))
    return out.view(value_type)


def identity_table(dtype):
    """Each channel's output value of each uint8 level with mean 0, std 1: the level itself."""
    return np.tile(np.arange(256), 4).astype(ELEMENTS[dtype][0])


# A wide spread of resizes: those of the CPU suite, a 16x reduction (32 taps, beyond the CPU operator's unrolled
# counts) and a 4x enlargement.
HOST_SHAPES = SHAPES + [(600, 850), (9, 14)]


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("dtype", [types.FLOAT, types.FLOAT16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_the_kernel_body_on_the_host_equals_the_cpu_operator_bit_for_bit(kernel_on_host, channels, dtype, layout):
    images = windows(HOST_SHAPES, channels)
    rng = np.random.default_rng(channels)
    # Half the samples read a window of the image in place, the rest the whole image.
    anchors, extents = [], []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        wh, ww = (int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))) if i % 2 else (h, w)
        anchors.append(np.array([rng.integers(0, h - wh + 1), rng.integers(0, w - ww + 1)], np.int32))
        extents.append(np.array([wh, ww], np.int32))
    mirror = [i % 3 == 1 for i in range(len(images))]

    def graph(x, m):
        a = fn.external_source(source=lambda: anchors, batch=True)
        e = fn.external_source(source=lambda: extents, batch=True)
        return op(x, m, mean=(0.0,), std=(1.0,), dtype=dtype, layout=layout, crop_anchor=a, crop_shape=e)

    [(cpu,)] = run(images, graph, mirror=mirror)
    for image, a, e, m, expected in zip(images, anchors, extents, mirror, cpu):
        got = on_host(kernel_on_host, image, (a, e), SIZE, m, dtype, layout, identity_table(dtype),
                      np.zeros(4))
        np.testing.assert_array_equal(got, expected, err_msg=f"window {tuple(e)} of {image.shape}, mirror {m}")


HOST_FILL = (-5.0, 6.5, 9.5)  # never a level of the identity table


def cell_hidden(key: int, cells: np.ndarray, p_hide: float) -> np.ndarray:
    """The Hide-and-Seek rule's cell decision (hide_and_seek_kernel.h), in numpy: splitmix64 of the cell index
    in the stream keyed by the sample's key, hidden iff its top 53 bits are below ceil(p_hide * 2**53)."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + (cells.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)) < np.uint64(int(np.ceil(p_hide * 2.0 ** 53)))


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("cell, mirror", [(7, False), (16, True), (1, False), (44, True)])
def test_the_kernel_body_hides_the_cells_the_rule_picks_and_nothing_else(kernel_on_host, cell, mirror, layout):
    image = windows([(90, 70)])[0]
    size, key, p_hide = (45, 50), 0x0123456789ABCDEF ^ cell, 0.5
    table, fill = identity_table(types.FLOAT), np.array(HOST_FILL + (0.0,))
    whole = ((0, 0), (90, 70))
    plain = on_host(kernel_on_host, image, whole, size, mirror, types.FLOAT, layout, table, fill)
    hidden = on_host(kernel_on_host, image, whole, size, mirror, types.FLOAT, layout, table, fill, cell=cell,
                     key=key, p_hide=p_hide)
    mask = mask_of(hidden, HOST_FILL, layout)
    grid_w = -(-size[1] // cell)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    expected = cell_hidden(key, (yy // cell) * grid_w + xx // cell, p_hide)
    assert 0 < expected.mean() < 1
    np.testing.assert_array_equal(mask, expected)  # cells on the output grid, after the flip
    np.testing.assert_array_equal(hidden, reference.apply_mask(plain, mask, HOST_FILL, layout))


@pytest.mark.gpu
@pytest.mark.untried_kernel
@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("dtype", [types.FLOAT, types.FLOAT16])
def test_gpu_backend_equals_cpu_backend(dtype, layout):
    if not fused.gpu_available():
        pytest.skip(f"the plugin's GPU kernel cannot run here: {fused.gpu_unavailable_reason()}")
    images = windows(SHAPES * 3)
    cfg = dict(patch_sizes=[0, 1, 7, 16, 56], p_hide=0.4, fill=list(FILL), seed=21)
    outs = {device: run_on(device, images, dtype, layout, cfg, size=SIZE) for device in ("cpu", "gpu")}
    for cpu_batch, gpu_batch in zip(outs["cpu"], outs["gpu"]):
        for x, y in zip(cpu_batch, gpu_batch):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)
    assert any(mask_of(y, FILL, layout).any() for batch in outs["gpu"] for y in batch)


@pytest.mark.gpu
@pytest.mark.untried_kernel
@pytest.mark.parametrize("shapes, channels, layout, size", [
    ([(2000, 1500), (1500, 2000)], 3, "HWC", (224, 224)),  # random windows: up to 9x reductions, 18 taps
    ([(2000, 1500)], 3, "CHW", (1024, 1024)),  # a million output pixels: the grid-stride loop wraps
    ([(12, 9), (7, 13)] * 550, 3, "HWC", (16, 16)),  # 1,100 samples: blockIdx.y up to 1,099
    ([(40, 30), (17, 61)] * 2, 1, "HWC", (224, 224)),
    ([(40, 30), (17, 61)] * 2, 4, "CHW", (224, 224)),
])
def test_gpu_backend_equals_cpu_backend_at_the_extremes(shapes, channels, layout, size):
    if not fused.gpu_available():
        pytest.skip(f"the plugin's GPU kernel cannot run here: {fused.gpu_unavailable_reason()}")
    images = windows(shapes, channels)
    cfg = dict(patch_sizes=[0, 1, 5, 56, 300], p_hide=0.5, fill=[2.5], seed=22)
    cpu = run_on("cpu", images, types.FLOAT16, layout, cfg, size=size, mean=MEAN[:1], std=STD[:1])
    gpu = run_on("gpu", images, types.FLOAT16, layout, cfg, size=size, mean=MEAN[:1], std=STD[:1])
    for cpu_batch, gpu_batch in zip(cpu, gpu):
        for x, y in zip(cpu_batch, gpu_batch):
            np.testing.assert_array_equal(x, y)


def run_on(device, images, dtype, layout, cfg, *, size, mean=MEAN, std=STD, iterations=2):
    """Batches of the operator on `device` over random windows of `images` (drawn on the CPU, the same for both
    devices), flipped every other sample; seeds fixed, so both devices draw the same cells."""
    mirror = [np.array(i % 2, np.int32) for i in range(len(images))]

    @pipeline_def(batch_size=len(images), num_threads=2, device_id=None if device == "cpu" else 0, seed=3,
                  prefetch_queue_depth=1)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        m = fn.external_source(source=lambda: mirror, batch=True)
        window = fn.random_crop_generator(x.shape(), seed=5)
        x = x.gpu() if device == "gpu" else x
        return fn.dali_has.resize_mirror_normalize_hide(x, size=list(size), mirror=m, mean=list(mean), std=list(std),
                                                        dtype=dtype, output_layout=layout, crop_anchor=window[0],
                                                        crop_shape=window[1], **cfg)

    p = pipe()
    p.build()
    batches = (p.run()[0] for _ in range(iterations))
    return [[np.array(t) for t in (out.as_cpu() if device == "gpu" else out)] for out in batches]
