"""The fused resize + flip + normalize + Hide-and-Seek operator (`resize_mirror_normalize_hide`) on the CPU
(its GPU backend: test_resize_mirror_normalize_gpu.py).

Reference: the chain it replaces, fn.resize (default: linear, antialiased when shrinking) ->
fn.crop_mirror_normalize -> dali_has.hide_and_seek. Both round the resized image to uint8 and normalize
each uint8 level with the same float operations, so they differ only where the two resizes (same weights,
different summation order: DALI picks the pass order per image, the fused op always goes vertical first)
land on different sides of a .5 and round to neighbouring levels. The tolerance is therefore one uint8
level, i.e. 1/std in normalized units, on a small share of values; everything else is bit for bit.

Hide-and-Seek masks are read back from the output: the fills lie outside the range normalized pixels can
take, so a value is hidden iff it equals the fill.
"""
import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def, types

from dali_has import HaSConfig, fused, plugin_build, reference, resize_mirror_normalize_hide
from tests.dali_has.has_harness import assert_checkpoint_resumes

pytestmark = pytest.mark.fused

MEAN = (124.0, 116.5, 104.0)
STD = (58.4, 57.1, 57.4)
# Normalized pixels lie in [(0 - 124) / 57.1, (255 - 104) / 57.4] ~ [-2.2, 2.7]: these fills never occur.
FILL = (-5.0, 6.5, 9.0)
LEVEL_STEP = 1 / min(STD)
OUT_TYPES = {types.FLOAT: np.float32, types.FLOAT16: np.float16}

# (height, width) windows around SIZE: shrinking, enlarging, identity, mixed, odd, 1-pixel thin.
SIZE = (37, 53)
SHAPES = [(120, 97), (20, 31), (37, 53), (200, 13), (5, 160), (1, 1), (38, 52), (77, 211)]


@pytest.fixture(autouse=True)
def plugin():
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")


def windows(shapes, channels=3, seed=0):
    """Noise on half the samples, smooth gradients plus noise on the rest (both occur in photos)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (h, w) in enumerate(shapes):
        if i % 2:
            yy, xx = np.mgrid[0:h, 0:w]
            base = (255 * (0.5 + 0.5 * np.sin(xx / 7.0 + yy / 11.0)))[..., None]
            img = base + rng.normal(0, 4, (h, w, channels))
        else:
            img = rng.integers(0, 256, (h, w, channels))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def run(images, graph, *, mirror=None, iterations=1, seed=1, batch_size=None):
    """Outputs per iteration (lists per output of lists of numpy arrays) of graph(x, mirror_node)."""
    mirror = [np.array(0, np.int32)] * len(images) if mirror is None else \
        [np.array(m, np.int32) for m in mirror]

    @pipeline_def(batch_size=batch_size or len(images), num_threads=2, device_id=None, seed=seed,
                  prefetch_queue_depth=1)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        m = fn.external_source(source=lambda: mirror, batch=True)
        out = graph(x, m)
        return out if isinstance(out, tuple) else (out,)

    p = pipe()
    p.build()
    return [[[np.array(t) for t in batch] for batch in p.run()] for _ in range(iterations)]


def op(x, m, *, size=SIZE, mean=MEAN, std=STD, dtype=types.FLOAT, layout="CHW", **has):
    """The fused operator itself; no Hide-and-Seek unless `has` arguments are given (other operator arguments,
    e.g. seed or crop_anchor, pass through with them)."""
    has = has if "patch_sizes" in has else {"patch_sizes": [0], "p_hide": 0.0, **has}
    return fn.dali_has.resize_mirror_normalize_hide(x, size=list(size), mirror=m, mean=list(mean),
                                                    std=list(std), dtype=dtype, output_layout=layout, **has)


def levels(y, layout, mean=MEAN, std=STD):
    """The uint8 level each normalized value came from."""
    shape = (-1, 1, 1) if layout == "CHW" else (1, 1, -1)
    m, s = np.reshape(mean, shape), np.reshape(std, shape)
    return np.rint(y.astype(np.float64) * s + m).astype(np.int64)


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("dtype", [types.FLOAT, types.FLOAT16])
@pytest.mark.parametrize("channels", [1, 3])
def test_equals_the_composed_chain_within_one_level(channels, dtype, layout):
    mean, std = (MEAN, STD) if channels == 3 else (MEAN[:1], STD[:1])
    images = windows(SHAPES, channels)
    mirror = [i % 2 for i in range(len(images))]

    def graph(x, m):
        fused_out = op(x, m, mean=mean, std=std, dtype=dtype, layout=layout)
        chain = fn.crop_mirror_normalize(fn.resize(x, size=list(SIZE)), mirror=m, mean=list(mean),
                                         std=list(std), dtype=dtype, output_layout=layout)
        return fused_out, chain

    [(ours, chain)] = run(images, graph, mirror=mirror)
    differing = total = 0
    for x, a, b in zip(images, ours, chain):
        expected_shape = (channels, *SIZE) if layout == "CHW" else (*SIZE, channels)
        assert a.shape == b.shape == expected_shape and a.dtype == b.dtype == OUT_TYPES[dtype]
        la, lb = levels(a, layout, mean, std), levels(b, layout, mean, std)
        assert np.abs(la - lb).max() <= 1, f"input {x.shape}: more than one uint8 level apart"
        same = la == lb
        np.testing.assert_array_equal(a[same], b[same])  # same level: the very same number
        err = np.abs(a.astype(np.float64) - b.astype(np.float64))
        assert err.max() <= 1 / min(std) + (4e-3 if dtype == types.FLOAT16 else 1e-6)
        differing += (~same).sum()
        total += same.size
    assert differing / total < 0.01  # measured: ~0.03 %


def test_real_crop_sizes_to_224_agree_with_the_chain():
    """The pipeline's case: random-resized-crop windows of ~450 and ~256 px photos to 224 x 224."""
    rng = np.random.default_rng(5)
    shapes = [(int(rng.integers(40, 400)), int(rng.integers(40, 480))) for _ in range(12)]
    images = windows(shapes)

    def graph(x, m):
        return op(x, m, size=(224, 224)), fn.crop_mirror_normalize(
            fn.resize(x, size=[224, 224]), mirror=m, mean=list(MEAN), std=list(STD), output_layout="CHW")

    [(ours, chain)] = run(images, graph, mirror=[1, 0] * 6)
    diff = [np.abs(levels(a, "CHW") - levels(b, "CHW")) for a, b in zip(ours, chain)]
    assert max(d.max() for d in diff) <= 1
    assert np.mean([d.mean() for d in diff]) < 0.01


def test_mirror_reverses_the_output_rows_exactly():
    images = windows(SHAPES)

    def graph(x, m):
        return op(x, 0, layout="HWC"), op(x, 1, layout="HWC"), op(x, m, layout="HWC")

    [(plain, flipped, per_sample)] = run(images, graph, mirror=[i % 2 for i in range(len(images))])
    for i, (a, b, c) in enumerate(zip(plain, flipped, per_sample)):
        np.testing.assert_array_equal(b, a[:, ::-1])
        np.testing.assert_array_equal(c, b if i % 2 else a)


def mask_of(y, fill, layout):
    """Hidden pixels, asserting the channels are coupled: a pixel equals the fill on all channels or none."""
    f = np.asarray(fill, y.dtype)
    eq = y == (f[:, None, None] if layout == "CHW" else f)
    axis = 0 if layout == "CHW" else 2
    np.testing.assert_array_equal(eq.any(axis=axis), eq.all(axis=axis))
    return eq.all(axis=axis)


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("dtype", [types.FLOAT, types.FLOAT16])
def test_hidden_cells_are_the_fill_and_the_rest_is_the_unhidden_output(dtype, layout):
    # Output 45 x 50 with sizes that do not divide it: clipped edge cells; a flip would show as a
    # right-anchored grid, which infer_cells rejects.
    cfg = HaSConfig(patch_sizes=(0, 7, 12, 16), p_hide=0.5, fill=FILL)
    images = windows(SHAPES * 2)
    mirror = [i % 3 == 0 for i in range(len(images))]

    def graph(x, m):
        return (op(x, m, size=(45, 50), dtype=dtype, layout=layout, **cfg.to_dict()),
                op(x, m, size=(45, 50), dtype=dtype, layout=layout))

    sizes = set()
    for hidden, whole in run(images, graph, mirror=mirror, iterations=3):
        for y, z in zip(hidden, whole):
            mask = mask_of(y, FILL, layout)
            size, _ = reference.infer_cells(mask, cfg.patch_sizes)  # top-left-anchored cells of an allowed size
            sizes.add(size)
            np.testing.assert_array_equal(y, reference.apply_mask(z, mask, FILL, layout))
    assert len(sizes) >= 3


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("dtype", [types.FLOAT, types.FLOAT16])
def test_draws_the_same_cells_as_hide_and_seek_after_the_flip(dtype, layout):
    """Same seed, same draws: the fused op equals dali_has.hide_and_seek applied to its unhidden output,
    i.e. hiding happens on the output grid after the flip, as the composed pipeline does it."""
    cfg = HaSConfig(patch_sizes=(0, 5, 16, 44), p_hide=0.4, fill=FILL)
    images = windows(SHAPES * 3)

    def graph(x, m):
        whole = op(x, m, size=(60, 45), dtype=dtype, layout=layout)
        return (op(x, m, size=(60, 45), dtype=dtype, layout=layout, seed=42, **cfg.to_dict()),
                fn.dali_has.hide_and_seek(whole, seed=42, **cfg.to_dict()))

    for ours, composed in run(images, graph, mirror=[i % 2 for i in range(len(images))], iterations=2):
        for a, b in zip(ours, composed):
            np.testing.assert_array_equal(a, b)


def test_no_hiding_when_p_is_zero_or_the_size_is_zero():
    images = windows(SHAPES)

    def graph(x, m):
        return (op(x, m), op(x, m, patch_sizes=[8, 16], p_hide=0.0, fill=FILL),
                op(x, m, patch_sizes=[0], p_hide=1.0, fill=FILL))

    [(plain, p_zero, size_zero)] = run(images, graph)
    for a, b, c in zip(plain, p_zero, size_zero):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_hidden_share_and_size_choice_match_the_rule():
    cfg = HaSConfig(patch_sizes=(0, 7, 10, 13), p_hide=0.3, fill=FILL)
    images = windows([(70, 60)] * 50)
    outs = run(images, lambda x, m: op(x, m, size=(64, 64), **cfg.to_dict()), iterations=8)
    shares, counts = [], dict.fromkeys(cfg.patch_sizes, 0)
    for (batch,) in outs:
        for y in batch:
            mask = mask_of(y, FILL, "CHW")
            shares.append(mask.mean())
            counts[reference.infer_cells(mask, cfg.patch_sizes)[0]] += 1
    n = len(shares)
    assert abs(np.mean(shares) - reference.hiding_share(cfg)) < 0.04  # 4 sigma of the mean of 400 samples
    for size, c in counts.items():  # multinomial, p = 1/4: std ~ 8.7; 4 sigma
        assert abs(c - n / 4) < 35, (size, counts)


def test_masks_differ_per_sample_and_iteration_and_follow_the_seed():
    cfg = HaSConfig(patch_sizes=(8,), p_hide=0.5, fill=FILL)
    images = windows([(50, 50)] * 8)

    def masks(seed):
        outs = run(images, lambda x, m: op(x, m, size=(48, 48), **cfg.to_dict()), iterations=2, seed=seed)
        return [[mask_of(y, FILL, "CHW") for y in batch] for (batch,) in outs]

    a, b, c = masks(7), masks(7), masks(8)
    assert len({m.tobytes() for m in a[0]}) == len(images)  # per sample
    assert not any(np.array_equal(m0, m1) for m0, m1 in zip(*a))  # per iteration
    assert all(np.array_equal(x, y) for it_a, it_b in zip(a, b) for x, y in zip(it_a, it_b))
    assert not all(np.array_equal(x, y) for it_a, it_c in zip(a, c) for x, y in zip(it_a, it_c))


@pytest.mark.filterwarnings("ignore:Checkpointing enabled in a pipeline with external source")
def test_checkpoint_resumes_the_mask_sequence():
    images = windows([(40, 40)] * 4)
    kwargs = dict(size=[32, 32], patch_sizes=[8], p_hide=0.5, fill=list(FILL))

    assert_checkpoint_resumes(lambda x: fn.dali_has.resize_mirror_normalize_hide(x, **kwargs), images)


def test_the_wrapper_picks_the_fused_op_and_the_builtin_chain_on_request():
    cfg = HaSConfig(patch_sizes=(0, 8), p_hide=0.5, fill=FILL)
    images = windows(SHAPES)
    mirror = [1, 0] * (len(images) // 2)
    kw = dict(size=SIZE, mean=MEAN, std=STD, dtype=types.FLOAT16, layout="HWC")

    def graph(x, m):
        return (resize_mirror_normalize_hide(x, mirror=m, **kw), op(x, m, dtype=types.FLOAT16, layout="HWC"),
                resize_mirror_normalize_hide(x, mirror=m, impl="builtin", **kw),
                fn.crop_mirror_normalize(fn.resize(x, size=list(SIZE)), mirror=m, mean=list(MEAN),
                                         std=list(STD), dtype=types.FLOAT16, output_layout="HWC"))

    [(auto, direct, composed, chain)] = run(images, graph, mirror=mirror)
    for a, b, c, d in zip(auto, direct, composed, chain):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, d)
    # With Hide-and-Seek: pipelines of the same shape and seed give the operator the same seed.
    [(wrapped,)] = run(images, lambda x, m: resize_mirror_normalize_hide(x, mirror=m, has=cfg, **kw),
                       mirror=mirror, seed=3)
    [(direct,)] = run(images, lambda x, m: op(x, m, dtype=types.FLOAT16, layout="HWC", **cfg.to_dict()),
                      mirror=mirror, seed=3)
    for a, b in zip(wrapped, direct):
        np.testing.assert_array_equal(a, b)
    assert any((mask_of(a, FILL, "HWC")).any() for a in wrapped)


@pytest.mark.parametrize("layout", ["CHW", "HWC"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_a_window_read_in_place_gives_the_same_bits_as_the_window_sliced_out(layout, channels):
    images = windows([(120, 97), (300, 450), (37, 53), (64, 64)], channels=channels)
    mirror = [1, 0, 0, 1]
    # The same seed for both operators, so they draw the same Hide-and-Seek cells.
    kw = dict(mean=MEAN[:1], std=STD[:1], layout=layout, patch_sizes=[0, 8], p_hide=0.5, fill=FILL[:1], seed=11)

    def graph(x, m):
        window = fn.random_crop_generator(x.shape(), seed=5)
        cut = fn.slice(x, start=window[0], shape=window[1], axes=[0, 1])
        chain = resize_mirror_normalize_hide(x, size=SIZE, mirror=m, mean=MEAN[:1], std=STD[:1], layout=layout,
                                             window=window, impl="builtin")
        return op(x, m, crop_anchor=window[0], crop_shape=window[1], **kw), op(cut, m, **kw), chain, window[1]

    for in_place, sliced, builtin, shapes in run(images, graph, mirror=mirror, iterations=2, seed=3):
        assert any(tuple(shape) != image.shape[:2] for shape, image in zip(shapes, images))  # real windows
        assert any(mask_of(a, FILL[:1] * channels, layout).any() for a in in_place)
        for a, b, c in zip(in_place, sliced, builtin):
            np.testing.assert_array_equal(a, b)
            assert a.shape == c.shape  # the chain slices the same window out (values: within a level, above)


@pytest.mark.parametrize("anchor, shape, message", [
    ((0, 0), (9, 8), r"window at \(y, x\) = \(0, 0\) of \(height, width\) = \(9, 8\) is not inside the 8x8 image"),
    ((-1, 0), (2, 2), "is not inside"),
    ((0, 0), (0, 4), "is not inside"),
    ((0, 0, 0), (2, 2, 3), "two int32 values per sample"),
])
def test_a_window_outside_the_image_is_refused(anchor, shape, message):
    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: [np.zeros((8, 8, 3), np.uint8)], batch=True, layout="HWC")
        a = fn.external_source(source=lambda: [np.array(anchor, np.int32)], batch=True)
        e = fn.external_source(source=lambda: [np.array(shape, np.int32)], batch=True)
        return fn.dali_has.resize_mirror_normalize_hide(x, size=[4, 4], crop_anchor=a, crop_shape=e)

    with pytest.raises(ValueError, match=message):
        p = pipe()
        p.build()
        p.run()


def gpu_graph(impl):
    @pipeline_def(batch_size=2, num_threads=1, device_id=0)
    def pipe():
        x = fn.external_source(name="x", layout="HWC").gpu()
        return resize_mirror_normalize_hide(x, size=8, impl=impl)

    return pipe()  # defined, not built: building would need a GPU


def last_operator(pipe) -> str:
    """The name of the node a defined (not built) pipeline outputs, e.g. "__CropMirrorNormalize_3"."""
    return pipe._graph_out[0].name


def test_gpu_images_get_the_chain_of_built_ins_unless_fused_is_asked_for(fused_on_gpu_definable):
    """On the GPU "auto" keeps the built-ins (the kernel is opt-in until measured on a GPU); "fused" runs it."""
    assert "CropMirrorNormalize" in last_operator(gpu_graph("auto"))
    assert "ResizeMirrorNormalizeHide" in last_operator(gpu_graph("fused"))


def test_fused_on_gpu_images_is_refused_saying_why_where_the_kernel_cannot_run(monkeypatch):
    monkeypatch.setitem(fused._state, "gpu", False)
    monkeypatch.setitem(fused._state, "gpu_reason", "no NVIDIA driver found")
    gpu_graph("auto")
    with pytest.raises(RuntimeError, match="cannot run on the GPU here: no NVIDIA driver found"):
        gpu_graph("fused")


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "size=0"),
    ({"size": ()}, r"size=\(\)"),
    ({"size": (10, 2.5)}, "size="),
    ({"mean": (1.0, 2.0, 3.0, 4.0, 5.0)}, "mean="),
    ({"std": (1.0, 0.0, 1.0)}, "std="),
    ({"std": float("nan")}, "std="),
    ({"dtype": types.INT32}, "dtype=INT32; expected one of types.FLOAT, types.FLOAT16"),
    ({"layout": "NCHW"}, "layout='NCHW'"),
    ({"has": [0.5]}, r"has=\[0.5\]; expected None, a dali_has.HaSConfig or a dict"),
    ({"has": {"p_hid": 0.5}}, "p_hid"),
    ({"impl": "gpu"}, "impl='gpu'"),
    ({"window": (1, 2, 3)}, "window="),
    # Each of these was accepted and then ignored, misread or written as infinities:
    ({"size": "16"}, "size='16'"),  # read as sides '1' and '6'
    ({"size": 2**32 + 8}, "fewer than 2..31"),  # became 8
    ({"size": (46341, 46341)}, "46341 x 46341 pixels"),  # the built-ins: std::bad_alloc
    ({"window": (0, 32)}, "window="),  # ignored by the operator, misread by the built-ins
    ({"mirror": 0.5}, "mirror=0.5"),  # no flip
    ({"std": 1e-45}, "beyond float32's largest"),
    ({"std": 0.001, "dtype": types.FLOAT16}, "beyond float16's largest"),
    ({"has": HaSConfig(fill=1e6), "dtype": types.FLOAT16}, "fill=.* does not fit float16"),
    ({"mean": (1.0, 2.0), "std": (1.0, 2.0, 3.0)}, "mean has 2 values and std 3"),  # DALI's assert before
])
def test_wrapper_rejects_bad_arguments_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resize_mirror_normalize_hide(None, **{"size": 8, **kwargs})


def test_has_settings_may_be_a_dict_as_everywhere_else():
    def graph(has):
        @pipeline_def(batch_size=1, num_threads=1, device_id=None)
        def pipe():
            return resize_mirror_normalize_hide(fn.external_source(name="x", layout="HWC"), size=8, has=has)
        return pipe().serialize()

    settings = {"patch_sizes": [0, 4], "p_hide": 0.25, "fill": 0.5}
    assert graph(settings) == graph(HaSConfig(**settings)) != graph(None)


def test_has_settings_are_validated_by_hasconfig():
    with pytest.raises(ValueError, match="p_hide=1.5"):
        HaSConfig(p_hide=1.5)


def test_a_float32_output_takes_a_fill_beyond_float16():
    """The operator checked the fill against float16 whatever the output type: 70000 was refused for float32."""
    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: [np.full((8, 8, 3), 9, np.uint8)], batch=True, layout="HWC")
        return fn.dali_has.resize_mirror_normalize_hide(x, size=[4, 4], dtype=types.FLOAT, patch_sizes=[4],
                                                        p_hide=1.0, fill=[70000.0])

    p = pipe()
    p.build()
    (out,) = p.run()
    np.testing.assert_array_equal(np.array(out[0]), np.full((3, 4, 4), 70000, np.float32))


@pytest.mark.parametrize("kwargs, image, layout, message", [
    ({"size": []}, np.zeros((8, 8, 3), np.uint8), "HWC", "`size` has 0 values"),
    ({"size": [8, 0]}, np.zeros((8, 8, 3), np.uint8), "HWC", r"`size` = \[8, 0\]"),
    ({"p_hide": 1.5}, np.zeros((8, 8, 3), np.uint8), "HWC", "`p_hide` = 1.5"),
    ({"patch_sizes": []}, np.zeros((8, 8, 3), np.uint8), "HWC", "`patch_sizes` is empty"),
    ({"fill": [1.0, 2.0]}, np.zeros((8, 8, 3), np.uint8), "HWC", "`fill` has 2 values but sample 0 has 3"),
    ({"mean": [1.0, 2.0]}, np.zeros((8, 8, 3), np.uint8), "HWC", "`mean` has 2 values but sample 0 has 3"),
    ({"std": [1.0, -1.0, 1.0]}, np.zeros((8, 8, 3), np.uint8), "HWC", "`std` contains -1"),
    ({"dtype": types.INT32}, np.zeros((8, 8, 3), np.uint8), "HWC", "`dtype` = int32 is not supported"),
    ({"output_layout": "NCHW"}, np.zeros((8, 8, 3), np.uint8), "HWC", "`output_layout` = \"NCHW\""),
    ({}, np.zeros((3, 8, 8), np.uint8), "CHW", 'layout is "CHW"; expected "HWC"'),
    ({}, np.zeros((8, 8, 3), np.float32), "HWC", "type float is not supported"),
    ({}, np.zeros((8, 8, 5), np.uint8), "HWC", "has 5 channels"),
    ({}, np.zeros((0, 8, 3), np.uint8), "HWC", "Sample 0 is empty"),
])
def test_operator_rejects_bad_arguments_and_inputs_by_name(kwargs, image, layout, message):
    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        x = fn.external_source(source=lambda: [image], batch=True, layout=layout)
        return fn.dali_has.resize_mirror_normalize_hide(x, **{"size": [4, 4], **kwargs})

    with pytest.raises(ValueError, match=message):
        p = pipe()
        p.build()
        p.run()


def test_the_operator_has_a_gpu_backend_where_the_plugin_has_its_cuda_kernels():
    from nvidia.dali import backend

    assert "dali_has__ResizeMirrorNormalizeHide" in backend.RegisteredCPUOps()
    built = plugin_build.build()
    assert ("dali_has__ResizeMirrorNormalizeHide" in backend.RegisteredGPUOps()) == built.gpu
