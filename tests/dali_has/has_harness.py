"""Run Hide-and-Seek implementations in small DALI pipelines fed with known images."""
from __future__ import annotations

import numpy as np
import pytest
from nvidia.dali import fn, pipeline_def

from dali_has import fused, hide_and_seek

IMPLS = ["composed", pytest.param("fused", marks=pytest.mark.fused)]


def require(impl: str) -> None:
    if impl == "fused" and not fused.load():
        pytest.skip(f"fused plugin unavailable: {fused.unavailable_reason()}")


def run_has(images, *, layout="HWC", impl="composed", seed=1, iterations=1, device="cpu", **has):
    """Feed the same batch `iterations` times; return a list (per iteration) of lists of numpy outputs."""
    require(impl)

    @pipeline_def(batch_size=len(images), num_threads=2, device_id=0 if device == "gpu" else None, seed=seed,
                  prefetch_queue_depth=1)
    def pipe():
        x = fn.external_source(source=lambda: images, batch=True, layout=layout)
        if device == "gpu":
            x = x.gpu()
        return hide_and_seek(x, impl=impl, **has)

    p = pipe()
    p.build()
    out = []
    for _ in range(iterations):
        (batch,) = p.run()
        if device == "gpu":
            batch = batch.as_cpu()
        out.append([np.array(t) for t in batch])
    return out


def hidden_mask(before: np.ndarray, after: np.ndarray, layout: str) -> np.ndarray:
    """Pixels changed on any channel (images are built so that no pixel already equals the fill)."""
    return (before != after).any(axis=2 if layout == "HWC" else 0)


def random_images(rng, shapes, dtype, layout, low=10, high=240):
    imgs = [rng.integers(low, high, size=s).astype(dtype) for s in shapes]
    return imgs if layout == "HWC" else [np.ascontiguousarray(i.transpose(2, 0, 1)) for i in imgs]
