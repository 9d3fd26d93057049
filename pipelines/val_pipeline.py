"""The validation pipeline: read in order -> decode -> resize the shorter side -> centre crop (or the paper's
10 crops) + normalize + layout. Never Hide-and-Seek: the paper hides only while training."""
from __future__ import annotations

from typing import Optional

from nvidia.dali import Pipeline, fn, pipeline_def

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
        return round(crop / CROP_RATIO)
    # Bounded like the crop (pipelines.settings): the resized image is held whole before the crop is cut from it,
    # and resize=10**6 died in std::bad_alloc.
    resize = validate.whole_number("resize", resize, minimum=1, maximum=MAX_CROP)
    if resize < crop:
        raise ValueError(f"resize={resize} must be >= crop={crop}: the crop is cut from the resized image")
    return resize


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
    images = fn.resize(images, resize_shorter=resize)
    if not ten_crop:
        return crop_mirror_normalize(images, image), labels
    crops = [crop_mirror_normalize(images, image, mirror=mirror, crop_pos=pos)
             for mirror in (0, 1) for pos in TEN_CROP_POSITIONS]
    return fn.stack(*crops, axis=0), labels
