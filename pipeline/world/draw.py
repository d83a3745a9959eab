"""Drawing the demo world's scenes: textured shapes on a noisy background, with their COCO annotations.

:func:`draw_image` draws image ``index`` of a split from its own seed ``(seed, SPLIT_INDEX[split], index)``:
an RGB ``[H, W, 3]`` uint8 image (size from :attr:`DemoOptions.sizes`) and its :class:`DrawnObject` s in drawing
order (xywh box, area, polygon or, for a crowd group, uncompressed RLE segmentation). The pieces:
:func:`shape_polygon` (vertices ``[P, 2]``), :func:`polygon_mask` (``[H, W]`` bool), :func:`texture_layer` and
:func:`background` (``[H, W, 3]`` uint8), :func:`rle_uncompressed` (COCO RLE of a mask).

:class:`DemoOptions` holds the generator's options (checked on construction, :class:`DemoDataError`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipeline.world.grammar import COLOURS, ClassSpec, DemoDataError

SPLIT_INDEX = {"train": 0, "val": 1, "teacher": 2}  # "teacher": held-out scenes of the CLIP teacher's evaluation
CROWD_PARTS = (3, 6)


@dataclass(frozen=True)
class DemoOptions:
    """Generator options (every value arrives from the config through the rule's params).

    Attributes:
        out_dir: output root (``results/demo_data``).
        classes: category names, in category-id order (ids 1..K).
        novel: names marked rare (``frequency='r'``) in the LVIS-format files.
        num_train, num_val: images per split.
        sizes: candidate image sizes ``(width, height)``.
        objects: (min, max) objects per image, crowd groups not counted.
        object_scale: (min, max) object side as a fraction of the image's short side.
        max_iou: placement rejects a box overlapping an earlier one by more than this IoU.
        crowd_prob: probability that an image carries one crowd group.
        novel_in_train: how often a novel class is drawn in a *training* scene, relative to a base class (1:
            as often, the real setting's unlabelled novel objects; 0: training scenes show base objects only).
            Novel boxes are never annotated in training files either way (pipeline.annotations removes them);
            the detectors' RPN and bbox head learn every unlabelled novel object as background. Validation
            scenes draw every class equally often.
        seed: the dataset's seed.
        quality: JPEG quality.
    """

    out_dir: Path
    classes: tuple[str, ...]
    novel: tuple[str, ...] = ()
    num_train: int = 128
    num_val: int = 96
    sizes: tuple[tuple[int, int], ...] = ((320, 240), (256, 256), (240, 320), (384, 288))
    objects: tuple[int, int] = (3, 7)
    object_scale: tuple[float, float] = (0.12, 0.45)
    max_iou: float = 0.3
    crowd_prob: float = 0.15
    novel_in_train: float = 1.0
    seed: int = 0
    quality: int = 90
    specs: tuple[ClassSpec, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise DemoDataError("demo classes: at least two are needed")
        dup = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if dup:
            raise DemoDataError(f"demo classes: repeated names {dup}")
        unknown = [n for n in self.novel if n not in self.classes]
        if unknown:
            raise DemoDataError(f"demo novel names not among demo classes: {unknown}")
        if not (1 <= self.objects[0] <= self.objects[1]):
            raise DemoDataError(f"demo objects: need 1 <= min <= max, got {self.objects}")
        if not (0 < self.object_scale[0] <= self.object_scale[1] <= 1):
            raise DemoDataError(f"demo object_scale: need 0 < min <= max <= 1, got {self.object_scale}")
        if not 0 <= self.novel_in_train <= 1:
            raise DemoDataError(f"demo novel_in_train: need 0 <= value <= 1, got {self.novel_in_train}")
        if self.novel_in_train == 0 and len(self.novel) == len(self.classes):
            raise DemoDataError("demo novel_in_train 0 with every class novel: training scenes would be empty")
        object.__setattr__(self, "specs", tuple(ClassSpec.parse(c) for c in self.classes))


def shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices ``[P, 2]`` (x, y) of ``shape`` centred at (cx, cy) with outer radius ``r``, rotated by ``angle``."""
    if shape == "circle":
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) / math.sqrt(2)
    elif shape == "triangle":
        t = np.array([-90, 30, 150]) * math.pi / 180
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "star":
        t = np.arange(10) * math.pi / 5 - math.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        pts = np.stack([np.cos(t) * rad, np.sin(t) * rad], 1)
    elif shape == "cross":
        a, b = 0.3, 1.0
        pts = np.array(
            [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]]
        )
    elif shape == "diamond":
        pts = np.array([[0, -1], [0.6, 0], [0, 1], [-0.6, 0]])
    elif shape == "hexagon":
        t = np.arange(6) * math.pi / 3
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif shape == "arrow":
        pts = np.array([[-1, -0.3], [0.2, -0.3], [0.2, -0.75], [1, 0], [0.2, 0.75], [0.2, 0.3], [-1, 0.3]])
    else:  # pragma: no cover - guarded by ClassSpec.parse
        raise DemoDataError(f"unknown shape {shape!r}")
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return pts.astype(np.float64) @ rot.T * r + np.array([cx, cy])


def polygon_mask(poly: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boolean ``[H, W]`` mask of a filled polygon."""
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in poly.tolist()], fill=1)
    return np.asarray(canvas, dtype=bool)


def texture_layer(spec: ClassSpec, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """``[H, W, 3]`` uint8 fill of a class's colour and texture (patterns at a random phase and period)."""
    colour = np.array(COLOURS[spec.colour], dtype=np.float32)
    dark = colour * 0.35
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = float(rng.uniform(5, 9))
    if spec.texture == "solid":
        on = np.ones((height, width), dtype=bool)
    elif spec.texture == "striped":
        theta = rng.uniform(0, math.pi)
        on = np.floor((xx * math.cos(theta) + yy * math.sin(theta)) / period) % 2 == 0
    elif spec.texture == "dotted":
        px, py = rng.uniform(0, period, 2)
        d = np.hypot((xx + px) % period - period / 2, (yy + py) % period - period / 2)
        on = d > period * 0.28
    else:  # checkered
        on = (np.floor(xx / period) + np.floor(yy / period)) % 2 == 0
    layer = np.where(on[..., None], colour, dark)
    shade = rng.uniform(0.85, 1.1)
    return np.clip(layer * shade, 0, 255).astype(np.uint8)


def background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A muted, noisy, low-frequency textured background ``[H, W, 3]`` uint8."""
    base = rng.uniform(70, 170, size=3)
    grey = base.mean()
    base = grey + (base - grey) * 0.35  # low saturation: objects stand out by colour
    coarse = rng.normal(0, 22, size=(max(2, height // 32), max(2, width // 32), 3))
    low = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((width, height), Image.BICUBIC),
        dtype=np.float32,
    )
    img = base + (low - 128) + rng.normal(0, 9, size=(height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def rle_uncompressed(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a boolean ``[H, W]`` mask (column-major runs, starting with zeros)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _bbox(poly: np.ndarray, width: int, height: int) -> list[float]:
    x1, y1 = np.clip(poly.min(0), 0, [width, height])
    x2, y2 = np.clip(poly.max(0), 0, [width, height])
    return [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2), round(float(y2 - y1), 2)]


@dataclass
class DrawnObject:
    category: int  # index into options.specs
    bbox: list[float]  # xywh
    area: float
    segmentation: list | dict
    iscrowd: int


def class_weights(opts: DemoOptions, split: str) -> np.ndarray | None:
    """Class probabilities of a scene object in ``split``; None = uniform (every class, and every val scene)."""
    if split != "train" or opts.novel_in_train == 1 or not opts.novel:
        return None
    novel = set(opts.novel)
    w = np.array([opts.novel_in_train if c in novel else 1.0 for c in opts.classes])
    return w / w.sum()


def draw_image(opts: DemoOptions, split: str, index: int) -> tuple[np.ndarray, list[DrawnObject]]:
    """Draw image ``index`` of ``split``; deterministic in ``(opts.seed, split, index)``.

    Returns:
        the RGB image ``[H, W, 3]`` uint8 and its objects in drawing order (later ones occlude earlier ones).
    """
    rng = np.random.default_rng([opts.seed, SPLIT_INDEX[split], index])
    width, height = opts.sizes[int(rng.integers(len(opts.sizes)))]
    img = background(width, height, rng)
    short = min(width, height)
    objects: list[DrawnObject] = []
    boxes: list[list[float]] = []

    def place(side: float, tries: int = 30) -> tuple[float, float] | None:
        for _ in range(tries):
            cx, cy = rng.uniform(side / 2, width - side / 2), rng.uniform(side / 2, height - side / 2)
            box = [cx - side / 2, cy - side / 2, side, side]
            if all(_iou(box, b) <= opts.max_iou for b in boxes):
                boxes.append(box)
                return cx, cy
        return None

    def paint(spec: ClassSpec, poly: np.ndarray) -> np.ndarray:
        mask = polygon_mask(poly, width, height)
        img[mask] = texture_layer(spec, width, height, rng)[mask]
        return mask

    n = int(rng.integers(opts.objects[0], opts.objects[1] + 1))
    crowd = rng.random() < opts.crowd_prob
    weights = class_weights(opts, split)
    for k in range(n + int(crowd)):
        # uniform draws keep the generator's random stream as it always was
        category = int(rng.integers(len(opts.specs))) if weights is None else int(rng.choice(len(weights), p=weights))
        spec = opts.specs[category]
        if k == n:  # the crowd group: several small same-class shapes, one annotation
            side = rng.uniform(0.3, 0.45) * short
            centre = place(side)
            if centre is None:
                continue
            union = np.zeros((height, width), dtype=bool)
            for _ in range(int(rng.integers(CROWD_PARTS[0], CROWD_PARTS[1] + 1))):
                r = rng.uniform(0.06, 0.1) * short
                px = centre[0] + rng.uniform(-side / 2 + r, side / 2 - r)
                py = centre[1] + rng.uniform(-side / 2 + r, side / 2 - r)
                union |= paint(spec, shape_polygon(spec.shape, px, py, r, rng.uniform(0, 2 * math.pi)))
            ys, xs = np.nonzero(union)
            bbox = [
                float(xs.min()),
                float(ys.min()),
                float(xs.max() + 1 - xs.min()),
                float(ys.max() + 1 - ys.min()),
            ]
            objects.append(DrawnObject(category, bbox, float(union.sum()), rle_uncompressed(union), 1))
            continue
        side = rng.uniform(*opts.object_scale) * short
        centre = place(side)
        if centre is None:
            continue
        poly = shape_polygon(spec.shape, centre[0], centre[1], side / 2, rng.uniform(0, 2 * math.pi))
        mask = paint(spec, poly)
        segmentation = [[round(float(v), 2) for v in poly.reshape(-1)]]
        objects.append(DrawnObject(category, _bbox(poly, width, height), float(mask.sum()), segmentation, 0))
    return img, objects
