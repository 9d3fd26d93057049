"""The validation pipeline: read in order -> decode -> resize the shorter side -> centre crop (or the paper's
10 crops) + normalize + layout. Never Hide-and-Seek: the paper hides only while training."""
from __future__ import annotations

from typing import Optional

from nvidia.dali import Pipeline, fn, pipeline_def

from pipelines.decoder import decode
from pipelines.normalize import crop_mirror_normalize
from pipelines.options import PipelineOptions, positive_int
from pipelines.reader import read_files

CROP_RATIO = 0.875  # the usual 224/256: resize the shorter side to crop / 0.875, then crop

# Ten-crop positions as crop_pos (x, y), 0 = left/top, 1 = right/bottom: top-left, top-right, bottom-left,
# bottom-right, centre. Crops 0-4 are these, crops 5-9 the same windows mirrored (crop k + 5 == flip(crop k)).
TEN_CROP_POSITIONS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5))
NUM_TEN_CROPS = 2 * len(TEN_CROP_POSITIONS)


def default_resize(crop: int) -> int:
    """Shorter side before cropping: 256 for 224 crops."""
    return round(crop / CROP_RATIO)


def val_pipeline(options: PipelineOptions, *, resize: Optional[int] = None, ten_crop: bool = False) -> Pipeline:
    """A DALI pipeline whose outputs are (images, int64 labels), in file order.

    resize: the shorter side after resizing, >= crop; None = round(crop / 0.875).
    ten_crop: False -> one centre crop per sample, [C, H, W] (NCHW) / [H, W, C] (NHWC);
        True -> the paper's 10 crops stacked per sample, [10, C, H, W] / [10, H, W, C], so a batch is
        [B, 10, ...] like torchvision's TenCrop + stack; average the 10 predictions per sample.
    """
    resize = default_resize(options.crop) if resize is None else positive_int("resize", resize)
    if resize < options.crop:
        raise ValueError(f"resize={resize} must be >= crop={options.crop}: the crop is cut from the resized image")
    if not isinstance(ten_crop, bool):
        raise ValueError(f"ten_crop={ten_crop!r} must be True or False")
    return _val_graph(options, resize, ten_crop, **options.pipeline_kwargs(options.pipeline_seed))


@pipeline_def
def _val_graph(options: PipelineOptions, resize: int, ten_crop: bool):
    encoded, labels = read_files(options, shuffle=False)
    images = fn.resize(decode(encoded, options), resize_shorter=resize)
    if not ten_crop:
        return crop_mirror_normalize(images, options), labels
    crops = [crop_mirror_normalize(images, options, mirror=mirror, crop_pos=pos)
             for mirror in (0, 1) for pos in TEN_CROP_POSITIONS]
    return fn.stack(*crops, axis=0), labels
