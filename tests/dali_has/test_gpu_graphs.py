"""Every Hide-and-Seek graph on GPU data, *defined* on the CPU machine (never built, so no GPU is needed).

Defining a DALI graph checks operator placement and arguments, e.g. that shape arguments live on the CPU: the
errors a user with a GPU would otherwise meet first. Running them is what the `gpu`-marked tests do.
"""
import warnings

import pytest
from nvidia.dali import fn, pipeline_def, types

from dali_has import HaSConfig, fused, hide_and_seek, hide_and_seek_temporal, operator, resize_mirror_normalize_hide
from tests.graph_placement import assert_placed

DTYPES = [types.UINT8, types.FLOAT16, types.FLOAT]


def define(graph, ndim, layout, dtype):
    @pipeline_def(batch_size=4, num_threads=1, device_id=0)
    def pipe():
        data = fn.external_source(name="data", dtype=dtype, ndim=ndim, layout=layout)
        return graph(data.gpu())

    defined = pipe()
    assert_placed(defined)
    return defined


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["HWC", "CHW"])
@pytest.mark.parametrize("fill", [0.0, 2.5, (1.0, 2.5, -3.0)])  # fills with halves add a run-time rounding choice
def test_composed_hide_and_seek_on_gpu_data(dtype, layout, fill):
    define(lambda x: hide_and_seek(x, impl="composed", fill=fill), 3, layout, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_fused_hide_and_seek_on_gpu_data(dtype, layout, fused_on_gpu_definable):
    define(lambda x: hide_and_seek(x, impl="fused", fill=(1.0, 2.5, -3.0)), 3, layout, dtype)


@pytest.mark.parametrize("kernel_usable", [True, False])
def test_auto_hide_and_seek_on_gpu_data_takes_the_kernel_where_it_can_run(kernel_usable, monkeypatch, request):
    if kernel_usable:
        request.getfixturevalue("fused_on_gpu_definable")
    else:
        monkeypatch.setitem(fused._state, "gpu", False)
        monkeypatch.setattr(fused, "gpu_unavailable_reason", lambda: "no NVIDIA driver found")
        monkeypatch.setattr(operator, "_warned", False)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        defined = define(lambda x: hide_and_seek(x, impl="auto", fill=(1.0, 2.5, -3.0)), 3, "HWC", types.UINT8)
    assert ["no NVIDIA driver found" in str(w.message) for w in warned] == ([] if kernel_usable else [True])
    assert ("HideAndSeek" in defined._graph_out[0].name) == kernel_usable  # defined, not built: the output's node


@pytest.mark.parametrize("impl", ["builtin", "fused"])
@pytest.mark.parametrize("dtype", [types.FLOAT, types.FLOAT16])
@pytest.mark.parametrize("layout", ["HWC", "CHW"])
def test_resize_mirror_normalize_hide_of_whole_images_on_gpu_data(impl, dtype, layout, request):
    """The GPU training graph's tail: decoded crops, no window (the decoder cut them)."""
    if impl == "fused":
        request.getfixturevalue("fused_on_gpu_definable")
    define(lambda x: resize_mirror_normalize_hide(x, size=8, mirror=fn.random.coin_flip(), mean=(1.0, 2.0, 3.0),
                                                  std=(4.0, 5.0, 6.0), dtype=dtype, layout=layout,
                                                  has=HaSConfig(fill=0.5), impl=impl,
                                                  has_impl="composed" if impl == "builtin" else "auto"),
           3, "HWC", types.UINT8)


def test_fused_on_gpu_data_where_only_the_kernel_is_unusable_says_so():
    """It said "the plugin is not available" while the CPU operators of the plugin ran."""
    if not fused.load() or fused.gpu_available():
        pytest.skip("needs the plugin loaded and its CUDA kernel unusable (this machine without a GPU)")
    with pytest.raises(RuntimeError, match="operator cannot run on the GPU: "):
        define(lambda x: hide_and_seek(x, impl="fused"), 3, "HWC", types.UINT8)


@pytest.mark.parametrize("dtype", DTYPES + [types.INT32, types.FLOAT64])
@pytest.mark.parametrize("layout, ndim, fill", [("FC", 2, (0.5, 1.0)), ("TC", 2, 0.0), ("FHWC", 4, (1.0, 2.5, 3.0)),
                                                 ("FCHW", 4, 2.5)])
def test_temporal_hide_and_seek_on_gpu_data(dtype, layout, ndim, fill):
    define(lambda x: hide_and_seek_temporal(x, segment=3, fill=fill), ndim, layout, dtype)


@pytest.mark.parametrize("impl", ["builtin", "fused"])
def test_resize_mirror_normalize_hide_of_a_window_on_gpu_data(impl, request):
    """The window's anchor and shape are CPU nodes fed to a GPU operator (or to fn.slice on the built-ins)."""
    if impl == "fused":
        request.getfixturevalue("fused_on_gpu_definable")

    def graph(images):
        anchor, shape = fn.random_crop_generator(images.shape())
        return resize_mirror_normalize_hide(images, size=8, window=(anchor, shape), has=HaSConfig(), impl=impl,
                                            has_impl="composed" if impl == "builtin" else "auto")

    define(graph, 3, "HWC", types.UINT8)
