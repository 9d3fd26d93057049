"""The numpy statement of `pipelines.temporal_sampling.sample_uniformly`'s rule, for the tests to compare with."""
import numpy as np


def uniform_frame_indices(length: int, count: int) -> np.ndarray:
    """Indices of the `count` frames sampled from a sequence of `length` frames: floor((j + 0.5) * length / count)."""
    return (2 * np.arange(count, dtype=np.int64) + 1) * length // (2 * count)
