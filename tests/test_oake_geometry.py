"""OAKE geometry: block windows / pyramid (method 5.4), adaptive squares, shifts and masks (5.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.models.clip import geometry as g


@pytest.mark.parametrize(
    ("size", "count"), [((640, 480), 27), ((640, 427), 22), ((500, 375), 17), ((640, 640), 39), ((800, 600), 54)]
)
def test_block_counts(size, count):
    assert len(g.block_boxes(*size)) == count


def test_partition_by_hand():
    # 640: span 416, n = (640 - 225) // 112 + 1 = 4 steps of 104
    assert g.partition(640) == [0, 104, 208, 312, 416]
    # 480: span 256, n = 3: steps 86, 85, 85 (the first one pixel longer)
    assert g.partition(480) == [0, 86, 171, 256]
    assert g.partition(224) == [0] and g.partition(223) == [] and g.partition(225) == [0, 1]
    for length in range(225, 1400, 7):
        offs = g.partition(length)
        assert offs[0] == 0 and offs[-1] == length - 224
        assert max(np.diff(offs)) <= 112 and max(np.diff(offs)) - min(np.diff(offs)) <= 1


def test_pyramid_levels_and_boxes_640x480():
    levels = g.pyramid(640, 480)
    assert [lv.size for lv in levels] == [(640, 480), (426, 320)]
    assert [len(lv.offsets) for lv in levels] == [20, 6]
    boxes = g.block_boxes(640, 480)
    np.testing.assert_allclose(boxes[0], [80, 0, 560, 480])  # true centre square
    np.testing.assert_allclose(boxes[1], [0, 0, 224, 224])
    # last window of level 2: offsets (202, 96) at scale 1.5
    np.testing.assert_allclose(boxes[-1], [202 * 1.5, 96 * 1.5, 426 * 1.5, 320 * 1.5])
    assert boxes.dtype == np.float32


def test_block0_box_quirk_option():
    assert g.block0_box(640, 480, "reference_quirk") == (80.0, 0.0, 480.0, 480.0)
    assert g.block0_box(480, 640, "reference_quirk") == (0.0, 80.0, 480.0, 480.0)
    assert g.block0_box(480, 640) == (0.0, 80.0, 480.0, 560.0)
    with pytest.raises(ValueError, match="block0 box mode"):
        g.block0_box(10, 10, "other")


def test_small_image_has_only_block0():
    boxes = g.block_boxes(200, 300)
    assert len(boxes) == 1 and tuple(boxes[0]) == (0, 50, 200, 250)


def test_keep_objects_filter():
    boxes = np.array([[0, 0, 4, 4], [0, 0, 3.9, 10], [0, 0, 10, 3], [5, 5, 20, 30]])
    assert g.keep_objects(boxes).tolist() == [True, False, False, True]


def square(box, w=640, h=480):
    return tuple(round(v, 6) for v in g.adaptive_square(box, w, h))


def test_adaptive_square_inside():
    # 20 x 10 box at (100, 100): side sqrt(1600) = 40, centred on (110, 105)
    assert square((100, 100, 120, 110)) == (90, 85, 130, 125)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((0, 100, 20, 110), (0, 85, 40, 125)),  # left border: shift right
        ((100, 0, 120, 10), (90, 0, 130, 40)),  # top border: shift down
        ((620, 100, 640, 110), (600, 85, 640, 125)),  # right border: shift left
        ((100, 470, 120, 480), (90, 440, 130, 480)),  # bottom border: shift up
        ((0, 0, 20, 10), (0, 0, 40, 40)),  # corner
    ],
)
def test_adaptive_square_shifts_at_borders(box, expected):
    assert square(box) == expected


def test_square_larger_than_image_is_not_shifted():
    # 300 x 200 box in a 320 x 240 image: side sqrt(8 * 60000) = 692.8 > both sides -> centred, sticks out
    side = math.sqrt(8 * 300 * 200)
    x1, y1, x2, y2 = g.adaptive_square((10, 20, 310, 220), 320, 240)
    assert math.isclose(x2 - x1, side) and math.isclose(x1, 160 - side / 2) and math.isclose(y1, 120 - side / 2)
    # larger than the height only: x is shifted, y is not
    x1, y1, x2, y2 = g.adaptive_square((0, 0, 30, 30), 1000, 60)
    assert x1 == 0 and math.isclose(y1, 15 - math.sqrt(7200) / 2)


def test_elongated_box_can_exceed_its_square():
    x1, y1, x2, y2 = g.adaptive_square((100, 100, 400, 102), 640, 480)  # 300 x 2: side sqrt(4800) = 69.3 < 300
    assert x2 - x1 < 300


def test_foreground_mask_contents():
    crop = (0, 0, 28, 28)  # 2 pixels per cell on a 14 grid
    mask = g.foreground_mask((4, 6, 9, 13), crop, 14)
    # cell c samples pixel 2c; inclusive bounds: x in [4, 9] -> cells 2..4, y in [6, 13] -> cells 3..6
    expected = np.zeros((14, 14), bool)
    expected[3:7, 2:5] = True
    np.testing.assert_array_equal(mask, expected)
    full = g.foreground_mask((0, 0, 28, 28), crop, 14)
    assert full.all()
    # a box in crop coordinates: a crop starting at (100, 50)
    shifted = g.foreground_mask((104, 56, 109, 63), (100, 50, 128, 78), 14)
    np.testing.assert_array_equal(shifted, expected)


def test_mask_of_a_real_adaptive_square_covers_the_centre():
    box = (200, 150, 260, 190)
    mask = g.foreground_mask(box, g.adaptive_square(box, 640, 480), 14)
    assert mask[7, 7] and not mask[0, 0] and not mask[13, 13]
    # object area / square area = 1/8 -> about 1/8 of the cells
    assert 0.08 < mask.mean() < 0.2


def test_nearest_sources_by_hand():
    # 12 -> 14: floor(g * 12/14) = 0 0 1 2 3 4 5 6 6 7 8 9 10 11; 28 -> 14: every second sample; 14 -> 14: identity
    assert g.nearest_sources(12, 14).tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 11]
    assert g.nearest_sources(28, 14).tolist() == list(range(0, 28, 2))
    assert g.nearest_sources(14, 14).tolist() == list(range(14))


def test_mask_of_a_small_box_is_built_on_the_unrounded_square():
    # 4 x 4 box at (100, 100): side sqrt(128) = 11.3137, square from 96.3431 to 107.6569 on both axes. The mask
    # samples positions 0..11 (ceil(side) = 12) of the square; the box spans [3.6569, 7.6569] of them: 4..7. Cells
    # whose source (nearest 12 -> 14: 0 0 1 2 3 4 5 6 6 7 8 9 10 11) is in 4..7: cells 5..9.
    box = (100, 100, 104, 104)
    mask = g.foreground_mask(box, g.adaptive_square(box, 640, 480), 14)
    expected = np.zeros((14, 14), bool)
    expected[5:10, 5:10] = True
    np.testing.assert_array_equal(mask, expected)
    # the rounded crop box (96, 96, 108, 108) would put the box at [4, 8] and add cells 10 (source 8)
    rounded = g.foreground_mask(box, g.crop_box(g.adaptive_square(box, 640, 480)), 14)
    assert rounded.sum() == 36 and mask.sum() == 25


def test_mask_of_a_box_touching_the_left_edge():
    # 4 x 5 box at the left edge: side sqrt(160) = 12.6491. x: centre 2 -> shifted right to start at 0, the box spans
    # [0, 4] -> positions 0..4; y: centre 102.5, square from 96.1754: the box spans [3.8246, 8.8246] -> 4..8.
    # ceil(side) = 13 positions -> 14 cells, sources floor(g * 13/14) = 0 0 1 2 3 4 5 6 7 8 9 10 11 12:
    # x cells 0..5, y cells 5..9 (the rounded crop (0, 96, 13, 109) would give y 4..9 -> cells 5..10)
    box = (0, 100, 4, 105)
    square = g.adaptive_square(box, 640, 480)
    assert square[0] == 0 and math.isclose(square[1], 102.5 - math.sqrt(160) / 2)
    expected = np.zeros((14, 14), bool)
    expected[5:10, 0:6] = True
    np.testing.assert_array_equal(g.foreground_mask(box, square, 14), expected)


def test_mask_of_a_box_touching_the_bottom_right_corner():
    # 6 x 4 box in the corner of a 640 x 480 image: side sqrt(192) = 13.8564, the square shifted to end at (640, 480)
    # and start at (626.1436, 466.1436); 14 positions -> 14 cells one to one. The box spans x [7.8564, 13.8564] ->
    # cells 8..13 and y [9.8564, 13.8564] -> cells 10..13.
    box = (634, 476, 640, 480)
    square = g.adaptive_square(box, 640, 480)
    assert square[2:] == (640.0, 480.0)
    expected = np.zeros((14, 14), bool)
    expected[10:14, 8:14] = True
    np.testing.assert_array_equal(g.foreground_mask(box, square, 14), expected)


def test_masks_equal_the_references_construction():
    """The reference's recipe re-done with torch on random proposals: positions ``arange(x2 - x1)`` of the float32
    square, inclusive bounds, ``F.interpolate(mode="nearest")`` to the grid."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    for _ in range(300):
        w, h = rng.uniform(4, 120, 2)
        x1, y1 = rng.uniform(-2, 640 - w), rng.uniform(-2, 480 - h)
        box = (x1, y1, x1 + w, y1 + h)
        square = torch.tensor(g.adaptive_square(box, 640, 480), dtype=torch.float32)
        fg = torch.tensor(box, dtype=torch.float32) - square[[0, 1, 0, 1]]
        x = torch.arange(square[2] - square[0])
        y = torch.arange(square[3] - square[1])
        ref = ((fg[0] <= x) & (x <= fg[2]))[None, :] & ((fg[1] <= y) & (y <= fg[3]))[:, None]
        ref = F.interpolate(ref[None, None].float(), size=(14, 14), mode="nearest")[0, 0].bool()
        np.testing.assert_array_equal(g.foreground_mask(box, square.tolist(), 14), ref.numpy(), err_msg=str(box))


# ---- crop strategies (the paper's crop ablation, expand_mode) --------------------------------------------------------
def crop(box, mode, w=640, h=480):
    return tuple(round(v, 6) for v in g.object_crop(box, w, h, mode))


def test_adaptive_crop_is_the_adaptive_square():
    assert crop((100, 100, 120, 110), "adaptive") == (90, 85, 130, 125)
    assert crop((0, 100, 20, 110), "adaptive") == (0, 85, 40, 125)


@pytest.mark.parametrize(
    ("box", "size", "expected"),
    [
        ((300, 200, 340, 230), (640, 480), (208, 103, 432, 327)),  # centre (320, 215), side 224, inside
        ((100, 100, 120, 110), (640, 480), (0, 0, 224, 224)),  # centre (110, 105): -2 and -7 shifted to 0
        ((600, 440, 630, 470), (640, 480), (416, 256, 640, 480)),  # centre (615, 455): shifted left and up
        ((300, 50, 340, 90), (640, 200), (208, -42, 432, 182)),  # 224 > the height 200: y centred, not shifted
        ((100, 100, 400, 300), (640, 480), (138, 88, 362, 312)),  # a box larger than 224 px is cut
    ],
)
def test_constant_crop_is_a_224_square(box, size, expected):
    assert crop(box, "constant", *size) == expected


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((100, 100, 160, 120), (100, 80, 160, 140)),  # 60 x 20: side 60 centred on (130, 110)
        ((0, 100, 60, 120), (0, 80, 60, 140)),  # at the left edge: already inside
        ((620, 0, 640, 50), (590, 0, 640, 50)),  # 20 x 50: side 50, x 605..655 shifted left by 15
        ((300, 470, 310, 480), (300, 470, 310, 480)),  # a square box is its own crop
    ],
)
def test_longest_edge_crop_is_the_tightest_square(box, expected):
    assert crop(box, "longest_edge") == expected


def test_rectangle_crop_is_the_proposal_itself():
    assert crop((100.5, 100, 160, 120.25), "rectangle") == (100.5, 100, 160, 120.25)


def test_unknown_crop_strategy_is_refused():
    with pytest.raises(ValueError, match="crop strategy .*'square'"):
        g.object_crop((0, 0, 10, 10), 64, 64, "square")


def test_masks_of_the_longest_edge_and_rectangle_crops():
    # longest edge of (100, 100, 160, 120): square (100, 80, 160, 140), 60 positions -> 14 cells, sources
    # floor(g * 60/14) = 0 4 8 12 17 21 25 30 34 38 42 47 51 55; the box spans x [0, 60] (all cells) and
    # y [20, 40] -> sources 21..38 = cells 5..9
    box = (100, 100, 160, 120)
    expected = np.zeros((14, 14), bool)
    expected[5:10, :] = True
    np.testing.assert_array_equal(g.foreground_mask(box, g.object_crop(box, 640, 480, "longest_edge"), 14), expected)
    # the rectangle is all object
    assert g.foreground_mask(box, g.object_crop(box, 640, 480, "rectangle"), 14).all()


def test_object_inputs_per_crop_strategy():
    import torch
    from PIL import Image

    from pipeline.models.clip import preprocess

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    boxes = np.array([[20, 30, 60, 50], [100, 10, 150, 110]], dtype=np.float32)
    crops, masks = preprocess.object_inputs(image, boxes, 14, "rectangle")
    assert crops.shape == (2, 3, 224, 224) and crops.dtype == torch.uint8 and masks.all()
    squashed = image.crop((100, 10, 150, 110)).resize((224, 224), Image.BICUBIC)  # 50 x 100 -> 224 x 224
    np.testing.assert_array_equal(crops[1].permute(1, 2, 0).numpy(), np.asarray(squashed))
    crops, masks = preprocess.object_inputs(image, boxes, 14, "constant")
    # 224 > both sides of the 160 x 120 image: the square is centred on the box and PIL pads with black
    square = g.object_crop(boxes[0], 160, 120, "constant")
    assert square == (-72.0, -72.0, 152.0, 152.0)
    np.testing.assert_array_equal(crops[0], preprocess.standard_uint8(image.crop((-72, -72, 152, 152))))
    np.testing.assert_array_equal(masks[0], g.foreground_mask(boxes[0], square, 14))
    adaptive, _ = preprocess.object_inputs(image, boxes, 14)
    assert not torch.equal(adaptive, crops)
