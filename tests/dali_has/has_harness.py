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


def run_graph(graph, batch, *, layout, device="cpu", seed=1, iterations=1):
    """Feed the same `batch` (a list of numpy samples with `layout`) `iterations` times through `graph(node)`, on
    the CPU or the GPU; returns per iteration the list of numpy outputs, whose layout must be the input's."""
    @pipeline_def(batch_size=len(batch), num_threads=2, device_id=0 if device == "gpu" else None, seed=seed,
                  prefetch_queue_depth=1)
    def pipe():
        x = fn.external_source(source=lambda: batch, batch=True, layout=layout)
        return graph(x.gpu() if device == "gpu" else x)

    p = pipe()
    p.build()
    out = []
    for _ in range(iterations):
        (result,) = p.run()
        assert result.layout() == (layout or "")
        out.append([np.array(t) for t in (result.as_cpu() if device == "gpu" else result)])
    return out


def assert_checkpoint_resumes(graph, batch, *, layout="HWC"):
    """A pipeline restored from a checkpoint taken after one iteration gives the second iteration's outputs."""
    @pipeline_def(batch_size=len(batch), num_threads=1, device_id=None, seed=5, enable_checkpointing=True)
    def pipe():
        return graph(fn.external_source(source=lambda: batch, batch=True, layout=layout))

    p = pipe()
    p.build()
    p.run()
    checkpoint = p.checkpoint()
    expected = [np.array(t) for t in p.run()[0]]
    q = pipe(checkpoint=checkpoint)
    q.build()
    for x, y in zip(expected, q.run()[0]):
        np.testing.assert_array_equal(x, np.array(y))


def run_has(images, *, layout="HWC", impl="composed", seed=1, iterations=1, device="cpu", **has):
    """`hide_and_seek` with implementation `impl` on `images`, see `run_graph`."""
    require(impl)
    return run_graph(lambda x: hide_and_seek(x, impl=impl, **has), images, layout=layout, device=device, seed=seed,
                     iterations=iterations)


def hidden_mask(before: np.ndarray, after: np.ndarray, layout: str) -> np.ndarray:
    """Pixels changed on any channel (images are built so that no pixel already equals the fill)."""
    return (before != after).any(axis=2 if layout == "HWC" else 0)


def random_images(rng, shapes, dtype, layout, low=10, high=240):
    imgs = [rng.integers(low, high, size=s).astype(dtype) for s in shapes]
    return imgs if layout == "HWC" else [np.ascontiguousarray(i.transpose(2, 0, 1)) for i in imgs]
