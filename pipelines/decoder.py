"""JPEG decoding for both pipelines: nvJPEG + hardware decoder (`mixed`) on GPU, libjpeg-turbo on CPU."""
from __future__ import annotations

from nvidia.dali import fn, types

from pipelines.options import PipelineOptions

# nvJPEG buffer paddings from DALI's ResNet-50 example: large enough for ImageNet's biggest images, so the
# decoder does not reallocate (and stall) when it meets one mid-epoch.
DEVICE_MEMORY_PADDING = 211_025_920
HOST_MEMORY_PADDING = 140_544_512


def decoder_kwargs(options: PipelineOptions) -> dict:
    """Decoder device and memory settings; every image comes out RGB (grayscale and CMYK are converted)."""
    if options.device == "cpu":
        return dict(device="cpu", output_type=types.RGB)
    kwargs = dict(device="mixed", output_type=types.RGB, hw_decoder_load=options.hw_decoder_load,
                  device_memory_padding=DEVICE_MEMORY_PADDING, host_memory_padding=HOST_MEMORY_PADDING)
    if options.preallocate_hint is not None:
        kwargs.update(preallocate_height_hint=options.preallocate_hint[0],
                      preallocate_width_hint=options.preallocate_hint[1])
    return kwargs


def decode_random_crop(encoded, options: PipelineOptions, *, random_area, random_aspect_ratio):
    """Decode only a random window (area share and width/height ratio drawn per sample): the crop of
    random-resized-crop happens at decode time, so the discarded pixels are never decoded."""
    return fn.decoders.image_random_crop(encoded, random_area=list(random_area),
                                         random_aspect_ratio=list(random_aspect_ratio), num_attempts=100,
                                         **decoder_kwargs(options))


def decode(encoded, options: PipelineOptions):
    """Decode whole images."""
    return fn.decoders.image(encoded, **decoder_kwargs(options))
