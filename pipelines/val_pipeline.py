"""The validation pipeline: read in order -> decode -> resize the shorter side -> centre crop (or the paper's
10 crops) + normalize + layout. Never Hide-and-Seek: the paper hides only while training."""
from __future__ import annotations

import math
from typing import Optional

import nvidia.dali.math as dmath
from nvidia.dali import Pipeline, fn, pipeline_def, types

from dali_has import validate
from pipelines.decoder import decode, on_device
from pipelines.files import Dataset
from pipelines.normalize import crop_mirror_normalize
from pipelines.reader import checked_files, holds_pixels, read_files
from pipelines.settings import CROP_RATIO, MAX_CROP, ImageOptions, PipelineOptions

# Ten-crop positions as crop_pos (x, y), 0 = left/top, 1 = right/bottom: top-left, top-right, bottom-left,
# bottom-right, centre. Crops 0-4 are these, crops 5-9 the same windows mirrored (crop k + 5 == flip(crop k)).
TEN_CROP_POSITIONS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5))


def eval_resize(crop: int, resize: Optional[int] = None) -> int:
    """The shorter side before cropping: `resize` checked against the crop, or by default 256 for 224 crops."""
    if resize is None:
        resize = round(crop / CROP_RATIO)
        if resize > MAX_CROP:  # was "resize=9362 must be ... <= 8192", a setting the user never gave
            raise ValueError(f"crop={crop}: evaluation resizes the shorter side to crop / {CROP_RATIO} = {resize} "
                             f"first, over {MAX_CROP}; give resize= (crop..{MAX_CROP}) or a crop of at most "
                             f"{math.floor(MAX_CROP * CROP_RATIO)}")
        return resize
    # Bounded like the crop (pipelines.settings): a larger shorter side is a typo, not a protocol.
    resize = validate.whole_number("resize", resize, minimum=1, maximum=MAX_CROP)
    if resize < crop:
        raise ValueError(f"resize={resize} must be >= crop={crop}: the crop is cut from the resized image")
    return resize


def crop_window(height, width, resize, crop: int, pos=(0.5, 0.5), *, floor=math.floor, minimum=min):
    """Where the crop at `pos` (0..1 of the free space, x then y) of an image resized to shorter side `resize`
    lies in the height x width source, as (scale, top, left): crop pixel (y, x) covers the source from
    (top + y / scale, left + x / scale), 1 / scale wide.

    The rule is DALI's: fn.resize(resize_shorter=...) scales both axes by resize / shorter side, rounds each size
    half up and keeps the scale by centring the rounded size on the source (its subpixel_scale); then
    fn.crop_mirror_normalize starts the crop at pos x (resized - crop), rounded half up. Numbers or DALI nodes
    (floor=nvidia.dali.math.floor, minimum=nvidia.dali.math.min): the pipeline and the box mapping of
    evaluation share it.
    """
    scale = resize / minimum(height, width)

    def start(size, p):
        resized = floor(size * scale + 0.5)
        return size / 2 + (floor(p * (resized - crop) + 0.5) - resized / 2) / scale

    return scale, start(height, pos[1]), start(width, pos[0])


def resized_crop(images, resize: int, crop: int, pos=(0.5, 0.5)):
    """The crop x crop window at `pos` of `images` resized to shorter side `resize` (`crop_window`), resized
    straight from the source region it covers (fn.resize's ROI): the pixels of resizing whole and cropping, to
    within float rounding, without holding the whole resized image (1 x 65,500 px would take ~12.6 GB at 256)."""
    shape = fn.cast(images.shape(), dtype=types.FLOAT)
    scale, top, left = crop_window(shape[0], shape[1], resize, crop, pos, floor=dmath.floor, minimum=dmath.min)
    extent = crop / scale
    return fn.resize(images, size=[crop, crop], roi_start=fn.stack(top, left),
                     roi_end=fn.stack(top + extent, left + extent))


def val_pipeline(options: PipelineOptions, image: ImageOptions, *, resize: Optional[int] = None,
                 ten_crop: bool = False, files: Optional[Dataset] = None) -> Pipeline:
    """A DALI pipeline (not built yet) whose outputs are (images, int64 labels), in file order.

    resize: the shorter side after resizing, >= crop; None = round(crop / 0.875).
    ten_crop: False -> one centre crop per sample, [C, H, W] (NCHW) / [H, W, C] (NHWC);
        True -> the paper's 10 crops stacked per sample, [10, C, H, W] / [10, H, W, C], so a batch is
        [B, 10, ...] like torchvision's TenCrop + stack; average the 10 predictions per sample.
    files: the checked files of image.data (`pipelines.file_check.usable_dataset`); None = check them now.
    """
    validate.boolean("ten_crop", ten_crop)
    return _val_graph(options, image, eval_resize(image.crop, resize), ten_crop, files,
                      **options.pipeline_kwargs(options.pipeline_seed))


@pipeline_def
def _val_graph(options: PipelineOptions, image: ImageOptions, resize: int, ten_crop: bool, files: Optional[Dataset]):
    files = checked_files(image, files)
    data, labels = read_files(options, image, shuffle=False, files=files)
    images = on_device(data, options.device) if holds_pixels(files) else decode(data, options.device, image)
    if not ten_crop:
        return crop_mirror_normalize(resized_crop(images, resize, image.crop), image), labels
    windows = [resized_crop(images, resize, image.crop, pos) for pos in TEN_CROP_POSITIONS]
    crops = [crop_mirror_normalize(window, image, mirror=mirror) for mirror in (0, 1) for window in windows]
    return fn.stack(*crops, axis=0), labels
