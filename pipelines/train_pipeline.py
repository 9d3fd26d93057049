"""The training pipeline: read (shuffled, sharded) -> random-resized-crop at decode time -> resize to
crop×crop -> random horizontal flip + normalize + layout -> Hide-and-Seek, last, on the network input."""
from __future__ import annotations

from typing import Optional, Union

from nvidia.dali import Pipeline, fn, pipeline_def

from dali_has import HaSConfig, hide_and_seek
from dali_has.operator import IMPLEMENTATIONS as HAS_IMPLEMENTATIONS
from pipelines.decoder import decode_random_crop
from pipelines.normalize import crop_mirror_normalize
from pipelines.options import PipelineOptions, check_range, positive_int
from pipelines.reader import read_files

# torchvision's RandomResizedCrop defaults: 8 %..100 % of the image area, width/height in 3/4..4/3.
RANDOM_AREA = (0.08, 1.0)
RANDOM_ASPECT_RATIO = (3 / 4, 4 / 3)
INITIAL_FILL = 1024  # shuffle buffer, in samples (DALI's default)
FLIP_PROBABILITY = 0.5


def as_has_config(has: Union[None, HaSConfig, dict]) -> Optional[HaSConfig]:
    """None (no Hide-and-Seek), a HaSConfig, or a dict of its settings (unknown keys are errors)."""
    if has is None or isinstance(has, HaSConfig):
        return has
    if isinstance(has, dict):
        return HaSConfig.from_dict(has)
    raise ValueError(f"has={has!r}; expected None, a dali_has.HaSConfig or a dict of its settings")


def train_pipeline(options: PipelineOptions, *, has: Union[None, HaSConfig, dict] = None, has_impl: str = "auto",
                   random_area=RANDOM_AREA, random_aspect_ratio=RANDOM_ASPECT_RATIO,
                   initial_fill: int = INITIAL_FILL, flip_probability: float = FLIP_PROBABILITY) -> Pipeline:
    """A DALI pipeline whose outputs are (images [crop, crop] in options.layout, int64 labels).

    has: Hide-and-Seek settings, applied after normalization, so `fill` is in normalized units
        (`pipelines.has_fill` converts a data set's mean colour); None = no hiding.
    has_impl: which Hide-and-Seek operator, "auto" (fused plugin if loadable, else the composition), "fused"
        or "composed" (see `dali_has.hide_and_seek`); `dali-has bench` compares them.
    random_area, random_aspect_ratio: (low, high) ranges of the random-resized-crop window.
    initial_fill: size of the reader's shuffle buffer in samples (larger = better mixed, more memory).
    flip_probability: chance of a horizontal flip per sample (0 for data whose labels a mirror image changes).
    """
    settings = check_train_settings(has, has_impl, random_area, random_aspect_ratio, initial_fill, flip_probability)
    return _train_graph(options, **settings, **options.pipeline_kwargs(options.pipeline_seed))


def check_train_settings(has, has_impl, random_area, random_aspect_ratio, initial_fill,
                         flip_probability=FLIP_PROBABILITY) -> dict:
    """The training-only settings, validated, as keyword arguments of `train_pipeline`."""
    if isinstance(flip_probability, bool) or not isinstance(flip_probability, (int, float)) \
            or not 0 <= flip_probability <= 1:
        raise ValueError(f"flip_probability={flip_probability!r} must be a probability in [0, 1]")
    if has_impl not in HAS_IMPLEMENTATIONS:
        raise ValueError(f"has_impl={has_impl!r}; expected one of {HAS_IMPLEMENTATIONS}")
    return dict(has=as_has_config(has), has_impl=has_impl,
                random_area=check_range("random_area", random_area, upper=1.0),
                random_aspect_ratio=check_range("random_aspect_ratio", random_aspect_ratio),
                initial_fill=positive_int("initial_fill", initial_fill), flip_probability=float(flip_probability))


@pipeline_def
def _train_graph(options: PipelineOptions, has: Optional[HaSConfig], has_impl: str, random_area,
                 random_aspect_ratio, initial_fill, flip_probability):
    encoded, labels = read_files(options, shuffle=True, initial_fill=initial_fill)
    images = decode_random_crop(encoded, options, random_area=random_area, random_aspect_ratio=random_aspect_ratio)
    # Linear interpolation with antialiasing when shrinking, like torchvision's RandomResizedCrop.
    images = fn.resize(images, size=(options.crop, options.crop))
    mirror = fn.random.coin_flip(probability=flip_probability) if flip_probability > 0 else 0
    images = crop_mirror_normalize(images, options, mirror=mirror)
    if has is not None:
        images = hide_and_seek(images, patch_sizes=has.patch_sizes, p_hide=has.p_hide, fill=has.fill_for(3),
                               impl=has_impl)
    return images, labels
