"""Temporal Hide-and-Seek (DALI) against the numpy oracle and statistically (CPU; GPU under `gpu`)."""
import numpy as np
import pytest

from dali_has import TemporalHaSConfig, hide_and_seek_temporal, reference
from tests.dali_has.has_harness import run_graph

DEVICES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


def run_temporal(sequences, *, layout, seed=1, iterations=1, device="cpu", **has):
    """`hide_and_seek_temporal` on `sequences`, see `run_graph`."""
    return run_graph(lambda x: hide_and_seek_temporal(x, **has), sequences, layout=layout, device=device, seed=seed,
                     iterations=iterations)


def hidden_frames(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Frames with any changed value (inputs are built so that no value already equals the fill)."""
    return (before != after).reshape(len(before), -1).any(axis=1)


def random_sequences(rng, shapes, dtype, low=10, high=240):
    return [rng.uniform(low, high, size=s).astype(dtype) for s in shapes]


CASES = [  # layout, per-sample shapes (frames first), dtype, fill
    ("FC", [(23, 6), (7, 6), (1, 6), (40, 6)], np.float32, (-1.5, 0.25, 2.0, 3.0, 4.0, 5.0)),  # per-feature fill
    ("TC", [(23, 6), (9, 6), (16, 6)], np.float16, 0.5),
    ("FHWC", [(13, 4, 5, 3), (6, 3, 2, 3), (20, 2, 2, 3)], np.uint8, (0.0, 127.3, 255.0)),
    ("FCHW", [(13, 3, 4, 5), (6, 3, 2, 2)], np.float32, (1.0, -2.0, 0.125)),
    ("FC", [(11, 4), (12, 4)], np.float64, 0.0),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout, shapes, dtype, fill", CASES)
def test_output_equals_oracle_for_the_segments_it_drew(device, layout, shapes, dtype, fill):
    sequences = random_sequences(np.random.default_rng(0), shapes, dtype)
    cfg = TemporalHaSConfig(segment=4, p_hide=0.5, fill=fill)
    for batch in run_temporal(sequences, layout=layout, device=device, iterations=3,
                              segment=cfg.segment, p_hide=cfg.p_hide, fill=cfg.fill):
        for x, y in zip(sequences, batch):
            assert y.dtype == x.dtype and y.shape == x.shape
            frames = hidden_frames(x, y)
            reference.infer_segments(frames, cfg.segment)  # whole segments from frame 0, last one clipped
            np.testing.assert_array_equal(y, reference.apply_frame_mask(x, frames, cfg.fill, layout))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_fills_ending_in_a_half_round_to_even_on_integer_sequences(device, dtype):
    # DALI's casts round halves away from zero on the CPU and to even on the GPU; the oracle rounds to even.
    sequences = random_sequences(np.random.default_rng(6), [(6, 2, 2, 3)], dtype)
    fill = (2.5, 3.5, -0.5) if dtype != np.uint8 else (2.5, 3.5, 0.5)
    (batch,) = run_temporal(sequences, layout="FHWC", device=device, segment=2, p_hide=1.0, fill=fill)
    (x,), (y,) = sequences, batch
    assert y.dtype == x.dtype
    expected = fill if dtype == np.float32 else np.rint(fill)
    np.testing.assert_array_equal(y, np.broadcast_to(np.array(expected, dtype), x.shape))
    np.testing.assert_array_equal(y, reference.apply_frame_mask(x, np.ones(6, bool), fill, "FHWC"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hidden_nan_and_infinite_values_become_the_fill_and_kept_ones_stay(device, dtype):
    # 0 * NaN is NaN: the blend x * (1 - m) + fill * m left hidden NaN / inf frames NaN, the oracle fills them.
    x = np.array([[np.nan, 1.0], [np.inf, -np.inf], [2.0, np.nan], [-0.0, 3.0]], dtype)
    (hidden,) = run_temporal([x], layout="FC", device=device, segment=1, p_hide=1.0, fill=(7.0, -8.0))
    np.testing.assert_array_equal(hidden[0], np.broadcast_to(np.array([7.0, -8.0], dtype), x.shape))
    (kept,) = run_temporal([x], layout="FC", device=device, segment=1, p_hide=0.0, fill=(7.0, -8.0))
    np.testing.assert_array_equal(kept[0], x)  # NaN where NaN was (assert_array_equal treats NaN as equal)


@pytest.mark.parametrize("device", DEVICES)
def test_p_zero_is_identity_and_p_one_hides_every_frame(device):
    sequences = random_sequences(np.random.default_rng(1), [(10, 3), (5, 3)], np.float32)
    (same,) = run_temporal(sequences, layout="FC", device=device, segment=3, p_hide=0.0, fill=-1.0)
    for x, y in zip(sequences, same):
        np.testing.assert_array_equal(x, y)
    (gone,) = run_temporal(sequences, layout="FC", device=device, segment=3, p_hide=1.0, fill=-1.0)
    for y in gone:
        assert (y == -1.0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_segments_are_aligned_clipped_hidden_at_rate_p_and_independent(device):
    # 10 frames in segments of 4: [0, 4), [4, 8) and the clipped [8, 10).
    cfg = TemporalHaSConfig(segment=4, p_hide=0.3)
    sequences = random_sequences(np.random.default_rng(2), [(10, 2)] * 64, np.float32)
    outs = run_temporal(sequences, layout="FC", device=device, iterations=8, segment=4, p_hide=0.3, fill=0.0)
    decisions = np.array([[reference.infer_segments(hidden_frames(x, y), 4) for x, y in zip(sequences, batch)]
                          for batch in outs], dtype=float)  # [iteration, sample, segment]
    assert decisions.shape == (8, 64, 3)
    n = 8 * 64
    rates = decisions.reshape(n, 3).mean(axis=0)
    # Binomial(512, 0.3): std 0.02; 4 sigma.
    assert np.all(np.abs(rates - cfg.p_hide) < 0.081), rates
    # Independence across segments, samples of a batch, and iterations: correlations near 0 (std ~ 1/sqrt(n)).
    flat = decisions.reshape(n, 3)
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        assert abs(np.corrcoef(flat[:, a], flat[:, b])[0, 1]) < 4 / np.sqrt(n)
    neighbours = np.corrcoef(decisions[:, :-1].ravel(), decisions[:, 1:].ravel())[0, 1]
    assert abs(neighbours) < 4 / np.sqrt(n)
    iterations = np.corrcoef(decisions[:-1].ravel(), decisions[1:].ravel())[0, 1]
    assert abs(iterations) < 4 / np.sqrt(n)


@pytest.mark.parametrize("device", DEVICES)
def test_masks_differ_per_sample_and_iteration_and_follow_the_seed(device):
    sequences = random_sequences(np.random.default_rng(4), [(64, 3)] * 6, np.float32)
    kw = dict(layout="FC", device=device, segment=4, p_hide=0.5, fill=0.0, iterations=2)
    a = run_temporal(sequences, seed=7, **kw)
    b = run_temporal(sequences, seed=7, **kw)
    c = run_temporal(sequences, seed=8, **kw)
    masks = [[hidden_frames(x, y) for x, y in zip(sequences, batch)] for batch in a]
    assert len({m.tobytes() for m in masks[0]}) == len(sequences)  # per sample (16 segments: 2^-16 collisions)
    assert not any(np.array_equal(m0, m1) for m0, m1 in zip(*masks))  # per iteration
    for ya, yb in zip(sum(a, []), sum(b, [])):
        np.testing.assert_array_equal(ya, yb)  # same seed, same masks
    assert any(not np.array_equal(ya, yc) for ya, yc in zip(sum(a, []), sum(c, [])))


def test_vector_fill_needs_a_channel_axis():
    sequences = random_sequences(np.random.default_rng(5), [(8, 3)], np.float32)
    with pytest.raises(RuntimeError, match="fn.reshape"):  # the fill cannot be laid along a `C` axis
        run_temporal(sequences, layout="FX", segment=2, p_hide=1.0, fill=(1.0, 2.0, 3.0))


@pytest.mark.parametrize("layout, shape", [("CFHW", (3, 8, 4, 4)), ("CF", (5, 8)), ("HWC", (8, 4, 3))])
def test_a_layout_whose_first_axis_is_not_frames_fails_rather_than_hiding_channels(layout, shape):
    """[C, T, H, W] video (PyTorch's order) had whole channels hidden, HWC images rows, silently."""
    sequences = random_sequences(np.random.default_rng(6), [shape], np.float32)
    with pytest.raises(RuntimeError, match="same size in bytes"):
        run_temporal(sequences, layout=layout, segment=2, p_hide=1.0, fill=0.0)


def test_sequences_without_a_layout_are_taken_as_frames_first():
    sequences = random_sequences(np.random.default_rng(7), [(6, 3)], np.float32)
    (batch,) = run_temporal(sequences, layout=None, segment=2, p_hide=1.0, fill=-1.0)
    assert (batch[0] == -1).all()


@pytest.mark.parametrize("bad, message", [
    (dict(segment=0), "segment=0"), (dict(segment=2.5), "segment=2.5"), (dict(segment=True), "segment=True"),
    (dict(segment=2**30), "<= 65536"),  # the composition's mask grows with it: 2**30 took 22 GB
    (dict(segment=4, p_hide=1.5), "p_hide=1.5"), (dict(segment=4, fill="mean"), "fill='mean'"),
])
def test_settings_are_validated(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TemporalHaSConfig(**bad)


def test_settings_repr():
    assert repr(TemporalHaSConfig(100, 0.5, (1, 2))) == "TemporalHaSConfig(segment=100, p_hide=0.5, fill=[1.0, 2.0])"
    assert repr(TemporalHaSConfig(8)) == "TemporalHaSConfig(segment=8, p_hide=0.5, fill=0.0)"


def test_reference_segments_are_clipped_and_inferred_back():
    assert reference.segments_to_frame_mask(np.array([0, 1, 1]), 4, 10).tolist() == [0] * 4 + [1] * 6
    assert reference.infer_segments(np.array([1, 1, 1, 0, 0, 0, 1, 1], dtype=bool), 3).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="3-frame segments"):
        reference.infer_segments(np.array([0, 1, 1, 1, 0, 0], dtype=bool), 3)
    hidden = reference.draw_segments(np.random.default_rng(0), 10, TemporalHaSConfig(4, p_hide=1.0))
    assert hidden.tolist() == [True, True, True]
