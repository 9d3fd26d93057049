"""CAM comparison picture (train.visualize): column titles and each predicted box's IoU on its tile."""
import numpy as np
from PIL import Image

from train.wsol.evaluate import Example
from train.wsol.visualize import GREEN, RED, cam_comparison

SCALE, PAD = 4, 2


def _example(predicted_box) -> Example:
    image = np.full((32, 32, 3), 128, np.uint8)
    cam = np.zeros((32, 32), np.float32)
    return Example(image, cam, np.array(predicted_box), np.array([[12, 12, 28, 28]]), True)


def _count(region: np.ndarray, color) -> int:
    return int((np.abs(region.astype(int) - color).sum(-1) < 60).sum())


def test_columns_are_titled_and_each_cam_tile_shows_its_iou(tmp_path):
    # IoU with the true box [12, 12, 28, 28]: 1.0 for the same box (green text), 0.25 for a quarter (red text).
    examples = {"baseline": [_example([20, 20, 28, 28])], "Hide-and-Seek": [_example([12, 12, 28, 28])]}
    picture = np.asarray(Image.open(cam_comparison(examples, tmp_path / "cams.png", scale=SCALE)).convert("RGB"))
    tile = 32 * SCALE
    header = picture.shape[0] - (tile + 2 * PAD)
    assert 8 < header < 40 and picture.shape[1] == 3 * (tile + PAD) + PAD
    for column in range(3):  # a title (dark pixels on white) centred over every column
        band = picture[:header, PAD + column * (tile + PAD):(column + 1) * (tile + PAD)]
        dark = np.nonzero((band < 100).all(-1))[1]
        assert dark.size > 20 and abs((dark.min() + dark.max()) / 2 - tile / 2) < 10
    corner = lambda column: picture[header + PAD:header + PAD + 20, PAD + column * (tile + PAD):][:, :60]
    assert _count(corner(0), GREEN) == _count(corner(0), RED) == 0  # the input has no caption
    assert _count(corner(1), RED) > 10 and _count(corner(1), GREEN) == 0  # "IoU 0.25", not localized
    assert _count(corner(2), GREEN) > 10 and _count(corner(2), RED) == 0  # "IoU 1.00"


def test_an_example_without_a_true_box_in_the_crop_is_drawn_as_a_miss(tmp_path):
    """Its object lies outside the evaluated crop (no true box left): the picture failed after the evaluation."""
    image, cam = np.full((32, 32, 3), 128, np.uint8), np.zeros((32, 32), np.float32)
    unseen = Example(image, cam, np.array([12, 12, 28, 28]), np.zeros((0, 4)), True)
    picture = np.asarray(Image.open(cam_comparison({"run": [unseen]}, tmp_path / "cams.png", scale=SCALE)))
    tile = 32 * SCALE
    header = picture.shape[0] - (tile + 2 * PAD)
    corner = picture[header + PAD:header + PAD + 20, 2 * PAD + tile:][:, :60, :3]
    assert _count(corner, RED) > 10 and _count(corner, GREEN) == 0  # "IoU 0.00"
