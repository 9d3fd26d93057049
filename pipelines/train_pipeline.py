"""The training pipeline: read (shuffled, sharded) -> random-resized-crop at decode time -> resize to
crop×crop -> random horizontal flip + normalize + layout -> Hide-and-Seek, last, on the network input."""
from __future__ import annotations

from typing import Optional

from nvidia.dali import Pipeline, fn, pipeline_def

from dali_has import hide_and_seek
from pipelines.decoder import decode_random_crop
from pipelines.files import Dataset
from pipelines.normalize import crop_mirror_normalize
from pipelines.reader import read_files
from pipelines.settings import ImageOptions, PipelineOptions, TrainAugment


def train_pipeline(options: PipelineOptions, image: ImageOptions, augment: TrainAugment = TrainAugment(), *,
                   files: Optional[Dataset] = None) -> Pipeline:
    """A DALI pipeline (not built yet) whose outputs are (images [crop, crop] in image.layout, int64 labels).

    files: the checked files of image.data (`pipelines.file_check.usable_dataset`); None = check them now.

    Hide-and-Seek (`augment.has`) runs after normalization, so its `fill` is in normalized units
    (`pipelines.has_fill` converts a data set's mean colour).
    """
    return _train_graph(options, image, augment, files, **options.pipeline_kwargs(options.pipeline_seed))


@pipeline_def
def _train_graph(options: PipelineOptions, image: ImageOptions, augment: TrainAugment, files: Optional[Dataset]):
    encoded, labels = read_files(options, image, shuffle=True, shuffle_buffer=augment.shuffle_buffer, files=files)
    images = decode_random_crop(encoded, options.device, image, random_area=augment.random_area,
                                random_aspect_ratio=augment.random_aspect_ratio)
    # Linear interpolation with antialiasing when shrinking, like torchvision's RandomResizedCrop.
    images = fn.resize(images, size=(image.crop, image.crop))
    flip = augment.flip_probability
    images = crop_mirror_normalize(images, image, mirror=fn.random.coin_flip(probability=flip) if flip > 0 else 0)
    has = augment.has
    if has is not None:
        images = hide_and_seek(images, patch_sizes=has.patch_sizes, p_hide=has.p_hide, fill=has.fill_for(3),
                               impl=augment.has_impl)
    return images, labels
