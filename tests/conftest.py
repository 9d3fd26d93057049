"""Shared test configuration: the `gpu` marker skips cleanly where CUDA is absent."""
import pytest


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU tests
        return False


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fused_on_gpu_definable(monkeypatch):
    """Lets a graph that runs the fused operator on GPU data be *defined* (never built) on a machine whose CUDA
    driver cannot run the kernel, e.g. CI without a GPU; skips where the plugin has no CUDA kernel at all."""
    from dali_has import fused, plugin_build

    if not fused.load():
        pytest.skip(f"fused plugin unavailable: {fused.unavailable_reason()}")
    built = plugin_build.build()
    if not built.gpu:
        pytest.skip(f"plugin built without its CUDA kernel: {built.gpu_reason}")
    monkeypatch.setitem(fused._state, "gpu", True)
