"""Stage ``demo_data``: a seeded, generated detection dataset with real JPEG images.

Each category is a coloured, textured shape named ``"<colour> [<texture>] <shape>"`` (``"red circle"``,
``"blue striped square"``; ``solid`` is left out of the name). Scenes have a noisy, textured background and
several objects at varied sizes, rotations and overlaps; some images carry an ``iscrowd`` group (a cluster of
small objects of one class annotated once, with an RLE mask). Every object has a polygon mask.

Outputs under ``--out-dir``::

    images/{train,val}/{image_id:012d}.jpg
    annotations/instances_{train,val}.json   COCO format (1-based category ids, iscrowd, polygons / RLE)
    annotations/lvis_{train,val}.json        LVIS format of the same images: frequency r/c/f (novel -> r,
                                             base -> f or c by training image count), neg_category_ids,
                                             not_exhaustive_category_ids, coco_url-style image names; no crowd

With ``--captions-per-class N`` (issue #9: the CLIP teacher's data) the generator also writes captioned
single-object crops of every class, base and novel alike (CLIP saw everything; the detector sees only base boxes)::

    captions/{train,test}/{index:06d}.png    square crops, 48-128 px, one object on the same noisy background
    captions/captions_{train,test}.json      [{"file_name", "caption", "category"}] (category: the class name)

``train`` has N crops per class; ``test`` (held out, zero-shot evaluation) has ``--caption-test-per-class``.
The CLIP teacher (:mod:`pipeline.teacher`) draws the same crops in memory with :func:`draw_caption_crop`.

Every image is drawn from its own seed ``(seed, split, index)``, so the dataset is identical across runs and
machines whatever the order of generation.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from pipeline import atomic, cli
from pipeline.templates import vild_templates

log = logging.getLogger(__name__)

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "arrow")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 50, 180),
    "orange": (245, 130, 20),
    "cyan": (40, 200, 210),
    "white": (245, 245, 245),
}
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("disc", "round"),
    "square": ("box",),
    "triangle": ("trigon",),
    "star": ("pentagram",),
    "cross": ("plus",),
    "diamond": ("rhombus", "lozenge"),
    "hexagon": ("hex",),
    "arrow": ("pointer",),
}
SPLIT_INDEX = {"train": 0, "val": 1, "teacher": 2}  # "teacher": held-out scenes of the CLIP teacher's evaluation
CAPTION_SPLIT_INDEX = {"train": 3, "test": 4}  # seed streams of the captioned crops (disjoint from the scenes')
# The captions use the 74 ViLD templates (so that the prompts stage's template ensemble speaks the teacher's
# language: with only a handful of caption templates, a tiny text tower maps unseen templates to near-identical
# embeddings, e.g. "red star" = "red circle" at cosine 1.0) and a few of their own.
CAPTION_TEMPLATES: tuple[str, ...] = (
    *vild_templates(),
    "a {}",
    "a picture of a {}",
    "a rendering of a {}",
    "a close-up photo of the {}",
    "a {} on a noisy background",
    "there is a {} in the picture",
    "this is a {}",
)
CROWD_PARTS = (3, 6)


class DemoDataError(ValueError):
    """Bad generator options (the message names the option or class)."""


@dataclass(frozen=True)
class ClassSpec:
    """One demo category: a shape drawn in a colour with a texture."""

    name: str
    colour: str
    texture: str
    shape: str

    @classmethod
    def parse(cls, name: str) -> ClassSpec:
        """Parse ``"<colour> [<texture>] <shape>"``; raise :class:`DemoDataError` naming a bad name."""
        words = name.split()
        if len(words) == 2:
            words = [words[0], "solid", words[1]]
        if (
            len(words) != 3
            or words[0] not in COLOURS
            or words[1] not in TEXTURES
            or words[2] not in SHAPES
            or (words[1] == "solid" and len(name.split()) == 3)
        ):
            raise DemoDataError(
                f"demo class {name!r} is not '<colour> [<texture>] <shape>' with colour in {sorted(COLOURS)}, "
                f"texture in {list(TEXTURES[1:])} (solid: leave out) and shape in {list(SHAPES)}"
            )
        return cls(name, words[0], words[1], words[2])


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
    num_train: int = 64
    num_val: int = 24
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


# ------------------------------------------------------------------------------------------------ splits


def split_kind(classes: Sequence[str], novel: Sequence[str]) -> dict:
    """What the base/novel split asks of a detector (issue #9), from the names alone.

    - ``combinations``: every novel class is an unseen combination: its shape and its colour (or texture) each
      appear in some base class, never together (``"blue circle"`` with base ``"red circle"``, ``"blue triangle"``);
    - ``shapes``: every novel class has a shape that no base class has (an unseen shape, the harder test);
    - ``mixed``: some of each, or novel classes whose colour is unseen too; ``none``: no novel class.

    Returns ``{"kind", "unseen_shapes", "unseen_colours", "per_class"}`` (per novel class: which of its parts
    the base classes show).
    """
    novel_set = set(novel)
    base = [ClassSpec.parse(c) for c in classes if c not in novel_set]
    base_shapes = {b.shape for b in base}
    base_looks = {b.colour for b in base} | {b.texture for b in base if b.texture != "solid"}
    per_class = {}
    for name in novel:
        spec = ClassSpec.parse(name)
        looks = [spec.colour] + ([spec.texture] if spec.texture != "solid" else [])
        per_class[name] = {
            "shape_seen": spec.shape in base_shapes,
            "look_seen": all(w in base_looks for w in looks),
        }
    if not per_class:
        kind = "none"
    elif all(p["shape_seen"] and p["look_seen"] for p in per_class.values()):
        kind = "combinations"
    elif all(not p["shape_seen"] for p in per_class.values()):
        kind = "shapes"
    else:
        kind = "mixed"
    return {
        "kind": kind,
        "unseen_shapes": sorted({ClassSpec.parse(n).shape for n, p in per_class.items() if not p["shape_seen"]}),
        "unseen_colours": sorted({n for n, p in per_class.items() if not p["look_seen"]}),
        "per_class": per_class,
    }


# ------------------------------------------------------------------------------------------------ drawing


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


# ------------------------------------------------------------------------------------------------ captions


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


def class_synonyms(spec: ClassSpec) -> list[str]:
    """Other names of a class: its shape synonyms (``"cyan checkered disc"``)."""
    words = [spec.colour] + ([spec.texture] if spec.texture != "solid" else [])
    return [" ".join([*words, syn]) for syn in SHAPE_SYNONYMS[spec.shape]]


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


def write_captions(
    opts: DemoOptions, per_class: int, test_per_class: int, caption_opts: CaptionOptions = CaptionOptions()
) -> None:
    """Write the captioned crops of both caption splits (PNG, lossless) and their caption files (last)."""
    for split, per in (("train", per_class), ("test", test_per_class)):
        folder = opts.out_dir / "captions" / split
        folder.mkdir(parents=True, exist_ok=True)
        records = []
        for index in tqdm(range(per * len(opts.specs)), desc=f"captions {split}", unit="img", leave=False):
            crop = draw_caption_crop(opts.specs, opts.seed, split, index, caption_opts)
            name = f"{index:06d}.png"
            with atomic.atomic_path(folder / name, suffix=".png") as tmp:
                Image.fromarray(crop.image).save(tmp, format="PNG")
            records.append({"file_name": name, "caption": crop.caption, "category": opts.specs[crop.category].name})
        atomic.write_json(opts.out_dir / "captions" / f"captions_{split}.json", records)
        log.info("captions %s: %d crops of %d classes", split, len(records), len(opts.specs))


# ------------------------------------------------------------------------------------------------ datasets


def image_id(opts: DemoOptions, split: str, index: int) -> int:
    """Ids are unique across splits: train 1..num_train, val after them."""
    return index + 1 + (opts.num_train if split == "val" else 0)


def coco_url(split: str, file_name: str) -> str:
    """LVIS-style image address; the image folder is its parent component (as for COCO 2017)."""
    return f"http://images.cocodataset.org/{split}/{file_name}"


def generate_split(opts: DemoOptions, split: str) -> tuple[dict, list[tuple[dict, list[DrawnObject]]]]:
    """Draw and save every image of ``split``; return the COCO dict and per-image objects."""
    count = opts.num_train if split == "train" else opts.num_val
    folder = opts.out_dir / "images" / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations, drawn = [], [], []
    for index in tqdm(range(count), desc=f"demo {split}", unit="img", leave=False):
        img, objects = draw_image(opts, split, index)
        iid = image_id(opts, split, index)
        name = f"{iid:012d}.jpg"
        with atomic.atomic_path(folder / name, suffix=".jpg") as tmp:
            Image.fromarray(img).save(tmp, format="JPEG", quality=opts.quality)
        record = {"id": iid, "file_name": name, "width": img.shape[1], "height": img.shape[0]}
        images.append(record)
        for obj in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1 + (10_000_000 if split == "val" else 0),
                    "image_id": iid,
                    "category_id": obj.category + 1,
                    "bbox": obj.bbox,
                    "area": obj.area,
                    "segmentation": obj.segmentation,
                    "iscrowd": obj.iscrowd,
                }
            )
        drawn.append((record, objects))
    categories = [{"id": i + 1, "name": s.name, "supercategory": s.shape} for i, s in enumerate(opts.specs)]
    coco = {
        "info": {
            "description": "OADP-Flow generated demo dataset",
            "seed": opts.seed,
            "split": split,
            "novel_split": split_kind(opts.classes, opts.novel)["kind"],
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    return coco, drawn


def frequencies(opts: DemoOptions, train: dict) -> dict[int, str]:
    """LVIS frequency per category id: novel -> 'r'; base -> 'f' at or above the median training image
    count of the bases, else 'c'."""
    image_sets: dict[int, set[int]] = {c["id"]: set() for c in train["categories"]}
    for a in train["annotations"]:
        if not a["iscrowd"]:
            image_sets[a["category_id"]].add(a["image_id"])
    novel = set(opts.novel)
    base_counts = [len(image_sets[i + 1]) for i, s in enumerate(opts.specs) if s.name not in novel]
    median = float(np.median(base_counts)) if base_counts else 0.0
    return {
        i + 1: "r" if s.name in novel else ("f" if len(image_sets[i + 1]) >= median else "c")
        for i, s in enumerate(opts.specs)
    }


def to_lvis(opts: DemoOptions, split: str, coco: dict, freq: dict[int, str]) -> dict:
    """The LVIS-format view of a generated split (crowd annotations dropped, as LVIS has none)."""
    rng = np.random.default_rng([opts.seed, SPLIT_INDEX[split], 7919])
    all_ids = [c["id"] for c in coco["categories"]]
    present: dict[int, set[int]] = {im["id"]: set() for im in coco["images"]}
    annotations = []
    for a in coco["annotations"]:
        if a["iscrowd"]:
            continue
        present[a["image_id"]].add(a["category_id"])
        annotations.append({k: a[k] for k in ("id", "image_id", "category_id", "bbox", "area", "segmentation")})
    images = []
    for im in coco["images"]:
        here = sorted(present[im["id"]])
        absent = [c for c in all_ids if c not in present[im["id"]]]
        neg = sorted(rng.choice(absent, size=min(3, len(absent)), replace=False).tolist()) if absent else []
        not_exhaustive = [c for c in here if rng.random() < 0.1]
        images.append(
            {
                "id": im["id"],
                "coco_url": coco_url(split, im["file_name"]),
                "width": im["width"],
                "height": im["height"],
                "neg_category_ids": [int(c) for c in neg],
                "not_exhaustive_category_ids": not_exhaustive,
            }
        )
    image_count = {c: sum(c in p for p in present.values()) for c in all_ids}
    instance_count = {c: sum(a["category_id"] == c for a in annotations) for c in all_ids}
    categories = []
    for spec, cat in zip(opts.specs, coco["categories"], strict=True):
        synonyms = [spec.name.replace(" ", "_")] + [
            " ".join([spec.colour] + ([spec.texture] if spec.texture != "solid" else []) + [syn])
            for syn in SHAPE_SYNONYMS[spec.shape]
        ]
        texture = "" if spec.texture == "solid" else f" {spec.texture}"
        categories.append(
            {
                "id": cat["id"],
                "name": spec.name,
                "synset": f"{spec.colour}_{spec.texture}_{spec.shape}.n.01",
                "synonyms": synonyms,
                "def": f"a {spec.colour}{texture} {spec.shape}",
                "frequency": freq[cat["id"]],
                "image_count": image_count[cat["id"]],
                "instance_count": instance_count[cat["id"]],
            }
        )
    return {"info": coco["info"], "images": images, "annotations": annotations, "categories": categories}


def run(opts: DemoOptions) -> None:
    """Generate both splits; annotation files are written last, so they never refer to a missing image."""
    kind = split_kind(opts.classes, opts.novel)
    log.info(
        "demo split: %d base, %d novel classes: novel = %s%s",
        len(opts.classes) - len(opts.novel),
        len(opts.novel),
        {"combinations": "unseen combinations of base colours and shapes", "shapes": "unseen shapes"}.get(
            kind["kind"], kind["kind"]
        ),
        f" ({', '.join(kind['unseen_shapes'])})" if kind["unseen_shapes"] else "",
    )
    cocos = {split: generate_split(opts, split)[0] for split in ("train", "val")}
    freq = frequencies(opts, cocos["train"])
    for split, coco in cocos.items():
        atomic.write_json(opts.out_dir / "annotations" / f"lvis_{split}.json", to_lvis(opts, split, coco, freq))
        atomic.write_json(opts.out_dir / "annotations" / f"instances_{split}.json", coco)
        log.info(
            "demo %s: %d images, %d annotations (%d crowd)",
            split,
            len(coco["images"]),
            len(coco["annotations"]),
            sum(a["iscrowd"] for a in coco["annotations"]),
        )


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"image size {text!r} is not WIDTHxHEIGHT") from exc
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.demo_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out-dir", type=Path, required=True, help="output root (outputs listed above)")
    p.add_argument("--classes", nargs="+", required=True, help="category names, '<colour> [<texture>] <shape>'")
    p.add_argument("--novel", nargs="*", default=[], help="names marked rare in the LVIS-format files")
    p.add_argument("--num-train", type=int, default=64)
    p.add_argument("--num-val", type=int, default=24)
    p.add_argument("--sizes", type=_size, nargs="+", default=list(DemoOptions.sizes), help="e.g. 320x240 256x256")
    p.add_argument("--objects", type=int, nargs=2, default=DemoOptions.objects, metavar=("MIN", "MAX"))
    p.add_argument("--object-scale", type=float, nargs=2, default=DemoOptions.object_scale, metavar=("MIN", "MAX"))
    p.add_argument("--max-iou", type=float, default=DemoOptions.max_iou)
    p.add_argument("--crowd-prob", type=float, default=DemoOptions.crowd_prob)
    p.add_argument(
        "--novel-in-train",
        type=float,
        default=DemoOptions.novel_in_train,
        help="how often a novel class is drawn in a training scene relative to a base class (0: never, 1: as often)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument(
        "--captions-per-class",
        type=int,
        default=0,
        help="also write captioned crops of every class under captions/ (0: none, the default)",
    )
    p.add_argument("--caption-test-per-class", type=int, default=20, help="held-out captioned crops per class")
    p.add_argument(
        "--captions-only",
        action="store_true",
        help="write only the captioned crops (rule demo_captions: they depend on the classes and the seed alone)",
    )
    cli.add_log_argument(p)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log, args.verbose)
    opts = DemoOptions(
        out_dir=args.out_dir,
        classes=tuple(args.classes),
        novel=tuple(args.novel),
        num_train=args.num_train,
        num_val=args.num_val,
        sizes=tuple(tuple(s) for s in args.sizes),
        objects=tuple(args.objects),
        object_scale=tuple(args.object_scale),
        max_iou=args.max_iou,
        crowd_prob=args.crowd_prob,
        novel_in_train=args.novel_in_train,
        seed=args.seed,
        quality=args.quality,
    )
    if args.captions_only and args.captions_per_class < 1:
        raise DemoDataError("--captions-only needs --captions-per-class >= 1")
    if not args.captions_only:
        run(opts)
    if args.captions_per_class > 0:
        write_captions(opts, args.captions_per_class, args.caption_test_per_class)


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
