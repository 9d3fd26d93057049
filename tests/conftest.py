"""Shared test configuration: the `gpu` marker skips cleanly where CUDA is absent; `untried_kernel` tests run last."""
import pytest


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU tests
        return False


def pytest_collection_modifyitems(config, items):
    # Last: a kernel that faults takes the process's CUDA context down, and every GPU test after it would fail.
    items.sort(key=lambda item: "untried_kernel" in item.keywords)  # stable: the order otherwise unchanged
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


@pytest.fixture(autouse=True, scope="session")
def _file_check_cache_per_test_session(tmp_path_factory):
    """The listing check's verdict cache in a fresh folder, not the user's ~/.cache (the compiled plugin stays)."""
    from pipelines import file_check

    folder = tmp_path_factory.mktemp("file_check_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(file_check, "default_cache_dir", lambda: folder)
        yield folder
