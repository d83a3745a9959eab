"""OAKE geometry (method sections 5.4 and 5.5): block windows and pyramid, object crops (the four crop strategies
of the paper's crop ablation), masks.

Pure functions on sizes and boxes; no images, no models. Boxes are xyxy in original-image pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BLOCK = 224
MAX_STRIDE = 112
RESCALE = 1.5
MIN_OBJECT_SIDE = 4.0
BLOCK0_BOX_MODES = ("centre", "reference_quirk")
#: object crop strategies (:func:`object_crop`); the first is the reference's default
EXPAND_MODES = ("adaptive", "constant", "longest_edge", "rectangle")
ADAPTIVE_RATIO = 8.0
CONSTANT_SIDE = 224.0


def partition(length: int, block: int = BLOCK, stride: int = MAX_STRIDE) -> list[int]:
    """Window offsets along one axis: none if ``length < block``, ``[0]`` if equal; otherwise
    ``n = (length - block - 1) // stride + 1`` steps splitting ``length - block`` into nearly equal integer steps
    (the first ``span mod n`` one pixel longer), i.e. ``n + 1`` offsets from 0 to ``length - block``."""
    if length < block:
        return []
    if length == block:
        return [0]
    span = length - block
    n = (length - block - 1) // stride + 1
    base, extra = divmod(span, n)
    steps = [base + 1] * extra + [base] * (n - extra)
    return [0] + np.cumsum(steps).tolist()


@dataclass(frozen=True)
class BlockLevel:
    """One pyramid level: the image resized to ``size`` = (w, h), windows at ``offsets`` (x, y), scale ``scale``."""

    size: tuple[int, int]
    scale: float
    offsets: tuple[tuple[int, int], ...]


def pyramid(
    width: int, height: int, block: int = BLOCK, stride: int = MAX_STRIDE, rescale: float = RESCALE
) -> list[BlockLevel]:
    """Levels at scale 1, 1.5, 1.5**2 ... (sizes ``int(prev / 1.5)``) while both sides are >= ``block``."""
    levels = []
    w, h, scale = width, height, 1.0
    while w >= block and h >= block:
        offsets = tuple((x, y) for x in partition(w, block, stride) for y in partition(h, block, stride))
        levels.append(BlockLevel((w, h), scale, offsets))
        w, h, scale = int(w / rescale), int(h / rescale), scale * rescale
    return levels


def block0_box(width: int, height: int, mode: str = "centre") -> tuple[float, float, float, float]:
    """Box of block 0 (the centre square through standard preprocessing).

    ``centre``: the true centre square, xyxy. ``reference_quirk``: what the reference writes, an xywh-style tuple
    among xyxy boxes, ``((W - H) / 2, 0, H, H)`` if W > H else ``(0, (H - W) / 2, W, W)`` (the released
    features contain it).
    """
    if mode not in BLOCK0_BOX_MODES:
        raise ValueError(f"block0 box mode {mode!r} not in {BLOCK0_BOX_MODES}")
    if width > height:
        x = (width - height) / 2
        return (
            (x, 0.0, float(height), float(height)) if mode == "reference_quirk" else (x, 0.0, x + height, float(height))
        )
    y = (height - width) / 2
    return (0.0, y, float(width), float(width)) if mode == "reference_quirk" else (0.0, y, float(width), y + width)


def block_boxes(width: int, height: int, block0: str = "centre") -> np.ndarray:
    """``[Nb, 4]`` float32 boxes: block 0, then every window of every level, (x*s, y*s, (x+224)*s, (y+224)*s)."""
    boxes = [block0_box(width, height, block0)]
    for level in pyramid(width, height):
        s = level.scale
        boxes += [(x * s, y * s, (x + BLOCK) * s, (y + BLOCK) * s) for x, y in level.offsets]
    return np.asarray(boxes, dtype=np.float32)


def keep_objects(boxes: np.ndarray, min_side: float = MIN_OBJECT_SIDE) -> np.ndarray:
    """Boolean mask of proposals with width >= 4 and height >= 4."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (boxes[:, 2] - boxes[:, 0] >= min_side) & (boxes[:, 3] - boxes[:, 1] >= min_side)


def _shift(lo: float, side: float, size: float) -> float:
    hi = lo + side
    if side > size:
        return lo  # larger than the image: sticks out on both sides
    if hi > size:
        return lo - (hi - size)
    if lo < 0:
        return 0.0
    return lo


def _square(box, side: float, width: int, height: int) -> tuple[float, float, float, float]:
    """A square of ``side`` centred on ``box``, shifted inside per axis (right/down if it overflows the left/top,
    left/up if it overflows the right/bottom, which wins; no shift when the side exceeds the image on that axis)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    sx = _shift(cx - side / 2, side, width)
    sy = _shift(cy - side / 2, side, height)
    return (sx, sy, sx + side, sy + side)


def adaptive_square(box, width: int, height: int) -> tuple[float, float, float, float]:
    """The adaptive square of a proposal: side sqrt(8 w h) centred on the box, shifted inside as :func:`_square`.
    No clamping, no minimum side (a very elongated box can be longer than its square)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return _square(box, math.sqrt(ADAPTIVE_RATIO * (x2 - x1) * (y2 - y1)), width, height)


def object_crop(box, width: int, height: int, mode: str = "adaptive") -> tuple[float, float, float, float]:
    """The region of the image that represents a proposal (xyxy floats; PIL crops it rounded, :func:`crop_box`),
    by crop strategy (the paper's crop ablation, the reference's ``expand_mode``):

    - ``adaptive`` (the reference's default): :func:`adaptive_square`, side sqrt(8 w h);
    - ``constant``: a 224 px square centred on the box, shifted inside as the adaptive one (a box larger than
      224 px is cut; as the reference's CONSTANT mode);
    - ``longest_edge``: a square of side max(w, h) centred on the box, shifted inside: the tightest square that
      holds the box (the reference's LONGEST_EDGE mode fails: it takes the side from ``torch.max(..., 1, True)``,
      a (values, indices) pair);
    - ``rectangle``: the proposal itself, no context (the reference's enum has RECTANGLE but no code for it);
      the crop is resized to the model's square input without keeping its aspect ratio.

    Raises ``ValueError`` for another mode.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if mode == "adaptive":
        return adaptive_square(box, width, height)
    if mode == "constant":
        return _square(box, CONSTANT_SIDE, width, height)
    if mode == "longest_edge":
        return _square(box, max(x2 - x1, y2 - y1), width, height)
    if mode == "rectangle":
        return (x1, y1, x2, y2)
    raise ValueError(f"crop strategy (expand_mode) {mode!r} not in {EXPAND_MODES}")


def crop_box(square) -> tuple[int, int, int, int]:
    """The pixel box PIL crops for a float square (PIL rounds each coordinate)."""
    return tuple(int(round(v)) for v in square)


def nearest_sources(size: int, grid: int) -> np.ndarray:
    """``[grid]`` int64: the source index of each output cell of a nearest-neighbour resize of ``size`` samples to
    ``grid`` as PyTorch's ``F.interpolate(mode="nearest")`` computes it: ``min(floor(g * s), size - 1)`` with the
    scale ``s = size / grid`` and the product in float32."""
    scale = np.float32(size) / np.float32(grid)
    return np.minimum(np.floor(np.arange(grid, dtype=np.float32) * scale).astype(np.int64), size - 1)


def foreground_mask(box, square, grid: int) -> np.ndarray:
    """``[grid, grid]`` bool, True = foreground, as the reference builds it on the UNROUNDED crop region ``square``
    (xyxy floats, :func:`object_crop`, a square or the rectangle; the crop PIL takes is rounded, the mask is not;
    each axis is resized on its own, as the crop is): the proposal translated to the region's corner,
    sampled at the integer positions ``0 .. ceil(side) - 1`` of each axis (inclusive bounds: ``x1 <= p <= x2``),
    then nearest-neighbour resized to ``grid`` (:func:`nearest_sources`). Computed in float32 as the reference."""
    sx1, sy1, sx2, sy2 = np.asarray(square, dtype=np.float32)
    bx1, by1, bx2, by2 = np.asarray(box, dtype=np.float32)
    axes = []
    for lo, hi, start, end in ((bx1, bx2, sx1, sx2), (by1, by2, sy1, sy2)):
        size = int(np.ceil(end - start))
        if size < 1:
            raise ValueError(f"object square {tuple(map(float, square))}: side < 1 pixel")
        positions = nearest_sources(size, grid).astype(np.float32)
        axes.append((positions >= lo - start) & (positions <= hi - start))
    in_x, in_y = axes
    return in_y[:, None] & in_x[None, :]
