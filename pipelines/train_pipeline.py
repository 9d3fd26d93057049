"""The training pipeline: read (shuffled, sharded) -> random-resized-crop at decode time -> resize to
crop×crop + random horizontal flip + normalize + layout + Hide-and-Seek on the network input.

On the CPU the tail after decoding is one plugin operator by default (`dali_has.resize_mirror_normalize_hide`:
one pass per output row, hidden cells written as the fill); on the GPU the same operator's CUDA kernel on request;
otherwise the built-ins fn.resize + fn.crop_mirror_normalize followed by `dali_has.hide_and_seek`
(`TrainAugment.resize_impl`).
"""
from __future__ import annotations

from typing import Optional, Union

from nvidia.dali import Pipeline, fn, pipeline_def

from dali_has import resize_mirror_normalize_hide
from pipelines.decoder import decode_random_crop
from pipelines.files import Dataset
from pipelines.reader import checked_files, holds_pixels, read_files
from pipelines.settings import ImageOptions, PipelineOptions, TrainAugment, as_train_augment


def train_pipeline(options: PipelineOptions, image: ImageOptions,
                   augment: Union[None, TrainAugment, dict] = None, *, files: Optional[Dataset] = None) -> Pipeline:
    """A DALI pipeline (not built yet) whose outputs are (images [crop, crop] in image.layout, int64 labels).

    augment: the training augmentation (a TrainAugment or a dict of its settings); None = the defaults, no
        Hide-and-Seek.
    files: the checked files of image.data (`pipelines.file_check.usable_dataset`); None = check them now.

    Hide-and-Seek (`augment.has`) runs after normalization, so its `fill` is in normalized units
    (`pipelines.has_fill` converts a data set's mean colour).
    """
    return _train_graph(options, image, as_train_augment(augment), files,
                        **options.pipeline_kwargs(options.pipeline_seed))


@pipeline_def
def _train_graph(options: PipelineOptions, image: ImageOptions, augment: TrainAugment, files: Optional[Dataset]):
    files = checked_files(image, files)
    data, labels = read_files(options, image, shuffle=True, shuffle_buffer=augment.shuffle_buffer, files=files)
    images, window = decode_random_crop(data, options.device, image, pixels=holds_pixels(files),
                                        random_area=augment.random_area,
                                        random_aspect_ratio=augment.random_aspect_ratio)
    flip = augment.flip_probability
    has = augment.has
    # Linear interpolation with antialiasing when shrinking, like torchvision's RandomResizedCrop.
    images = resize_mirror_normalize_hide(
        images, size=image.crop, mirror=fn.random.coin_flip(probability=flip) if flip > 0 else 0, mean=image.mean,
        std=image.std, dtype=image.dali_dtype, layout=image.layout[1:],
        has=None if has is None else has.for_channels(3), impl=augment.resize_impl, has_impl=augment.has_impl,
        window=window)
    return images, labels
