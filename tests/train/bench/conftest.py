"""Fixtures of the micro-benchmark tests."""
import pytest

from train.bench import windows


@pytest.fixture(scope="session")
def tiny_sets(tmp_path_factory):
    """Eight generated JPEGs and their copy at a longest side of 256 (`windows.image_sets`)."""
    return windows.image_sets(8, cache_dir=tmp_path_factory.mktemp("sets"))
