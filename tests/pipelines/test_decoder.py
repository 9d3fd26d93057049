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
