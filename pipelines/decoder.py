"""Decoding for the image pipelines: encoded images with nvJPEG + the hardware decoder (`mixed`) on GPU and
libjpeg-turbo on CPU; decoded pixels (`.npy`, `dali-has prepare --encoding npy`), which the training and validation
pipelines' reader gives as images (`pipelines.reader.read_pixels`) and `npy_pixels` copies out of file bytes, are
only moved to the GPU for a GPU pipeline."""
from __future__ import annotations

from nvidia.dali import fn, types

from pipelines.settings import ImageOptions

# nvJPEG's scratch buffers, preallocated PER DECODER THREAD: one device buffer of DEVICE_MEMORY_PADDING and two
# pinned host buffers of HOST_MEMORY_PADDING (double-buffered). DALI's ResNet-50 example sizes them for ImageNet's
# largest image (211 MB device, 140 MB host), which at 16 threads pins 4.5 GB of host memory and takes 3.4 GB of
# GPU memory per pipeline before the first batch. Most ImageNet JPEGs are at most 500 px a side (~0.2 MP, 4:2:0):
# about 3 bytes/pixel of DCT coefficients on the host and 7.5 on the device (coefficients, YCbCr planes, RGB out),
# i.e. under 2 MB. By that estimate DALI's defaults below cover images up to ~2 MP with no reallocation; a larger
# image grows the thread's buffer once, and it stays grown. `make gpu-check` measures what a pipeline holds
# per thread count.
DEVICE_MEMORY_PADDING = 16 << 20
HOST_MEMORY_PADDING = 8 << 20
# Draws of (area, ratio) before the decoder falls back to the whole image (clamped to the ratio range).
RANDOM_CROP_ATTEMPTS = 100


def decoder_kwargs(device: str, image: ImageOptions | None = None) -> dict:
    """Decoder device and memory settings (`image` gives the GPU decoder's options; None = defaults); every
    image comes out RGB (grayscale and CMYK are converted)."""
    if device == "cpu":
        return dict(device="cpu", output_type=types.RGB)
    kwargs = dict(device="mixed", output_type=types.RGB, device_memory_padding=DEVICE_MEMORY_PADDING,
                  host_memory_padding=HOST_MEMORY_PADDING)
    if image is not None:
        kwargs.update(hw_decoder_load=image.hw_decoder_load)
        if image.preallocate_hint is not None:
            kwargs.update(preallocate_height_hint=image.preallocate_hint[0],
                          preallocate_width_hint=image.preallocate_hint[1])
    return kwargs


def decode_random_crop(data, device: str, image: ImageOptions | None, *, pixels: bool = False, random_area,
                       random_aspect_ratio):
    """A random window of each image (area share and width/height ratio drawn per sample), as (images, window).

    Encoded images: only the window is decoded (the crop of random-resized-crop happens at decode time, so the
    discarded pixels are never decoded); `window` is None. `image`: as in `decoder_kwargs`.
    pixels (`data` are decoded HWC uint8 images, as `pipelines.reader` reads `.npy` files): the window is drawn
    by the same rule (`fn.random_crop_generator`); on the CPU the whole images come back with window = (anchor,
    shape), for the resize to read in place (`dali_has.resize_mirror_normalize_hide(window=...)`: slicing it out
    first would copy it once more); for a GPU pipeline the window is sliced out on the CPU, so only it is moved
    to the GPU, and `window` is None.
    """
    if not pixels:
        return fn.decoders.image_random_crop(data, random_area=list(random_area),
                                             random_aspect_ratio=list(random_aspect_ratio),
                                             num_attempts=RANDOM_CROP_ATTEMPTS, **decoder_kwargs(device, image)), None
    window = fn.random_crop_generator(data.shape(), random_area=list(random_area),
                                      random_aspect_ratio=list(random_aspect_ratio), num_attempts=RANDOM_CROP_ATTEMPTS)
    if device != "gpu":
        return data, window
    return on_device(fn.slice(data, start=window[0], shape=window[1], axes=[0, 1]), device), None


def decode(encoded, device: str, image: ImageOptions | None = None, *, pixels: bool = False):
    """Decode whole images (pixels: `encoded` holds the bytes of `.npy` files)."""
    if not pixels:
        return fn.decoders.image(encoded, **decoder_kwargs(device, image))
    return on_device(npy_pixels(encoded), device)


def on_device(images, device: str):
    """CPU `images`, moved to the GPU for a GPU pipeline."""
    return images.gpu() if device == "gpu" else images


def npy_pixels(encoded):
    """HWC uint8 images from `.npy` bytes (the listing check has made sure of dtype, shape and size)."""
    return fn.reshape(fn.decoders.numpy(encoded), layout="HWC")
