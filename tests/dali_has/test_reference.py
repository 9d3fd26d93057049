import numpy as np
import pytest

from dali_has import HaSConfig, reference
from dali_has.spec import grid_shape


def test_grid_covers_the_image_with_clipped_edge_cells():
    assert grid_shape(224, 224, 44) == (6, 6) and grid_shape(224, 224, 0) == (0, 0)  # 5 full cells + a 4-px strip
    cells = np.zeros((6, 6), bool)
    cells[5, 5] = True
    mask = reference.cells_to_mask(cells, 44, 224, 224)
    assert mask.shape == (224, 224) and mask.sum() == 4 * 4 and mask[220:, 220:].all()


def test_non_square_grid_is_anchored_top_left():
    cells = np.array([[True, False, False], [False, False, True]])
    mask = reference.cells_to_mask(cells, 10, 15, 25)
    assert mask[:10, :10].all() and not mask[:10, 10:].any()
    assert mask[10:, 20:].all() and mask[10:, 20:].shape == (5, 5) and mask.sum() == 100 + 25


def test_apply_mask_fills_every_channel_and_rounds_for_integers():
    img = np.full((4, 4, 3), 100, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    out = reference.apply_mask(img, mask, (1.6, -5.0, 300.0))
    assert out[0, 0].tolist() == [2, 0, 255] and (out[1:] == 100).all()
    chw = reference.apply_mask(np.zeros((3, 4, 4), np.float32), mask, (1.5, 2.5, 3.5), "CHW")
    assert chw[:, 0, 0].tolist() == [1.5, 2.5, 3.5] and chw[:, 1:].sum() == 0


def test_drawn_masks_hide_the_expected_share():
    rng = np.random.default_rng(0)
    cfg = HaSConfig(patch_sizes=(0, 16, 32), p_hide=0.5)
    shares = []
    for _ in range(2000):
        size, cells = reference.draw_cells(rng, 64, 96, cfg)
        shares.append(reference.cells_to_mask(cells, size, 64, 96).mean())
    assert abs(np.mean(shares) - reference.hiding_share(cfg)) < 0.02


def test_infer_cells_rejects_masks_off_the_grid():
    mask = np.zeros((20, 20), bool)
    mask[3:13, 0:10] = True  # a 10-pixel block, but not aligned to the top-left grid
    with pytest.raises(ValueError, match="not a union of grid cells"):
        reference.infer_cells(mask, (10,))
    mask = np.zeros((20, 20), bool)
    mask[10:, :10] = True
    size, cells = reference.infer_cells(mask, (0, 10))
    assert size == 10 and cells.tolist() == [[False, False], [True, False]]
    # Nested sizes: a mask of 32-cells is also one of 16-cells; smallest first read it as 16.
    cells = np.array([[True, False], [False, True]])
    size, found = reference.infer_cells(reference.cells_to_mask(cells, 32, 64, 64), (0, 16, 32, 44, 56))
    assert size == 32 and np.array_equal(found, cells)
    assert reference.infer_cells(np.zeros((64, 64), bool), (0, 16, 32))[0] == 0
