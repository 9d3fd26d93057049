import pytest

from train.wsol.synth import SynthConfig, generate


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A 64px synthetic WSOL set small enough to train on in seconds: 37 train (odd, so shards differ), 12 test."""
    root = tmp_path_factory.mktemp("synth")
    generate(root, SynthConfig(n_train=37, n_test=12, classes=3), progress=False)
    return root
