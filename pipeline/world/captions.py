"""Captioned single-object crops of the demo world: the CLIP teacher's training and held-out data.

:func:`draw_caption_crop` draws crop ``index`` of caption split ``train`` | ``test`` from its own seed
``(seed, CAPTION_SPLIT_INDEX[split], index)``: a square ``[S, S, 3]`` uint8 image (``S`` in
:attr:`CaptionOptions.size`) with one object of class ``index % K`` on the scenes' noisy background, maybe parts
of other objects behind its border, and a caption from :data:`~pipeline.world.grammar.CAPTION_TEMPLATES` naming
the class (or a shape synonym), returned as a :class:`CaptionCrop`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.world.draw import background, polygon_mask, shape_polygon, texture_layer
from pipeline.world.grammar import CAPTION_TEMPLATES, ClassSpec, DemoDataError, class_synonyms

CAPTION_SPLIT_INDEX = {"train": 3, "test": 4}  # seed streams of the captioned crops (disjoint from the scenes')


@dataclass(frozen=True)
class CaptionOptions:
    """Captioned single-object crops (the CLIP teacher's data).

    Attributes:
        size: (min, max) crop side in pixels; the texture keeps its scene scale (period 5-9 px).
        object_scale: (min, max) object side as a fraction of the crop side.
        clutter: probability that parts of 1-2 other objects (any class) lie behind the crop's border, as
            neighbours do in scene crops with context; the caption names only the centre object.
        synonym_prob: probability that the caption uses a shape synonym (``"red disc"``) instead of the name.
    """

    size: tuple[int, int] = (48, 128)
    object_scale: tuple[float, float] = (0.35, 0.9)
    clutter: float = 0.5
    synonym_prob: float = 0.2


@dataclass
class CaptionCrop:
    image: np.ndarray  # [S, S, 3] uint8
    category: int  # index into the class list
    caption: str
    box: tuple[float, float, float, float]  # the captioned object's box, xyxy in crop pixels


def draw_caption_crop(
    specs: Sequence[ClassSpec], seed: int, split: str, index: int, opts: CaptionOptions = CaptionOptions()
) -> CaptionCrop:
    """Captioned crop ``index`` of ``split`` (``train`` | ``test``); deterministic in ``(seed, split, index)``.

    Classes cycle with the index (``index % len(specs)``), so every class, base and novel, is equally frequent.
    """
    if split not in CAPTION_SPLIT_INDEX:
        raise DemoDataError(f"caption split {split!r} not in {sorted(CAPTION_SPLIT_INDEX)}")
    rng = np.random.default_rng([seed, CAPTION_SPLIT_INDEX[split], index])
    category = index % len(specs)
    spec = specs[category]
    size = int(rng.integers(opts.size[0], opts.size[1] + 1))
    img = background(size, size, rng)

    def paint(s: ClassSpec, poly: np.ndarray) -> None:
        mask = polygon_mask(poly, size, size)
        img[mask] = texture_layer(s, size, size, rng)[mask]

    if rng.random() < opts.clutter:
        for _ in range(int(rng.integers(1, 3))):
            other = specs[int(rng.integers(len(specs)))]
            r = rng.uniform(0.2, 0.45) * size
            along, edge = rng.uniform(0, size), int(rng.integers(4))
            out = rng.uniform(0.1, 0.6) * r  # centre beyond the border: only a part shows
            cx, cy = [(along, -out), (along, size + out), (-out, along), (size + out, along)][edge]
            paint(other, shape_polygon(other.shape, cx, cy, r, rng.uniform(0, 2 * math.pi)))
    side = rng.uniform(*opts.object_scale) * size
    cx, cy = rng.uniform(side / 2, size - side / 2, 2)
    poly = shape_polygon(spec.shape, cx, cy, side / 2, rng.uniform(0, 2 * math.pi))
    paint(spec, poly)
    box = tuple(float(v) for v in (*poly.min(0), *poly.max(0)))
    name = spec.name
    if rng.random() < opts.synonym_prob:
        synonyms = class_synonyms(spec)
        name = synonyms[int(rng.integers(len(synonyms)))]
    caption = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))].format(name)
    return CaptionCrop(img, category, caption, box)
