"""Decoder settings: what the GPU decoder preallocates per thread."""
from pipelines import ImageOptions, PipelineOptions
from pipelines.decoder import decoder_kwargs


def test_gpu_decoder_preallocates_at_most_a_gigabyte_at_16_threads(tmp_path):
    # nvJPEG preallocates its paddings per decoder thread: one device buffer and two pinned host buffers each.
    (tmp_path / "a").mkdir()
    options = PipelineOptions(batch_size=8, device="gpu", device_id=0, num_threads=16)
    kwargs = decoder_kwargs(options.device, ImageOptions(data=str(tmp_path)))
    threads = options.pipeline_kwargs(seed=None)["num_threads"]
    assert threads * kwargs["device_memory_padding"] <= 1 << 30
    assert threads * 2 * kwargs["host_memory_padding"] <= 1 << 30


def test_random_windows_of_decoded_pixels_are_parts_of_the_image_within_the_ranges(tmp_path):
    import numpy as np
    from nvidia.dali import fn, pipeline_def

    from pipelines.decoder import decode_random_crop, npy_pixels

    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)  # noise: every window unique
    np.save(tmp_path / "image.npy", image)
    area, ratio = (0.08, 1.0), (3 / 4, 4 / 3)

    @pipeline_def(batch_size=64, num_threads=1, device_id=None, seed=3)
    def windows():
        encoded, _ = fn.readers.file(files=[str(tmp_path / "image.npy")] * 64)
        images, (anchor, shape) = decode_random_crop(npy_pixels(encoded), "cpu", None, pixels=True, random_area=area,
                                                     random_aspect_ratio=ratio)
        return fn.slice(images, start=anchor, shape=shape, axes=[0, 1])  # what the resize reads in place

    pipe = windows()
    pipe.build()
    shapes = set()
    for window in pipe.run()[0]:
        window = np.array(window)
        h, w, _ = window.shape
        shapes.add((h, w))
        assert any(np.array_equal(image[y:y + h, x:x + w], window)
                   for y in range(61 - h) for x in range(81 - w)), (h, w)
        # Rounding to whole pixels moves the share and the ratio by less than a pixel's worth.
        assert area[0] * 0.9 <= h * w / (60 * 80) <= 1.0
        assert ratio[0] * 0.9 <= w / h <= ratio[1] * 1.1
    assert len(shapes) > 20  # drawn per sample
