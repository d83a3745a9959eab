"""A generated demo dataset rewritten as a user's own COCO-format dataset (``--custom DIR``), to exercise
``dataset: custom`` with awkward ids, names, folders and fields.

Layout under ``DIR``::

    images/{train,val}/<nested folders>/<demo file name>.jpg   copies of the demo images
    annotations/train.json    no segmentation, no area, no iscrowd key (crowd groups left out)
    annotations/val.json      segmentation, area and crowd groups (iscrowd 1) kept

Category ``k`` of the demo (0-based, in the demo's order) gets id :func:`category_id` (non-contiguous: 1000007,
10, 31, 66, ...) and the name :func:`custom_name`, whose style cycles through title case (``"Red Circle"``),
hyphens (``"blue-square"``), upper case (``"GREEN STAR"``) and French with accents (``"étoile rouge"``). The
categories are listed in descending id order. Image ``i`` of the demo becomes image ``1000 * i + 7`` with
``file_name`` in subfolders (``shelf-1/...`` for train; ``shelf 1/level-2/...``, with a space, for val).
Annotation ids are the demo's. The annotation files are written last.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.core import atomic
from pipeline.world.grammar import ClassSpec, DemoDataError

FRENCH_COLOURS = {
    "red": "rouge", "green": "vert", "blue": "bleu", "yellow": "jaune", "purple": "violet", "orange": "orange",
    "cyan": "cyan", "white": "blanc",
}  # fmt: skip
FRENCH_SHAPES = {
    "circle": "cercle", "square": "carré", "triangle": "triangle", "star": "étoile", "cross": "croix",
    "diamond": "losange", "hexagon": "hexagone", "arrow": "flèche",
}  # fmt: skip
FRENCH_TEXTURES = {"striped": "rayé", "dotted": "à pois", "checkered": "à damier"}


def category_id(index: int) -> int:
    """The custom id of the demo's ``index``-th category (0-based): 1000007 for the first, then ``7 k^2 + 3``."""
    return 1_000_007 if index == 0 else 7 * index * index + 3


def custom_name(name: str, index: int) -> str:
    """The custom name of the demo class ``name`` at position ``index`` (the style is ``index`` mod 4)."""
    style = index % 4
    if style == 0:
        return name.title()
    if style == 1:
        return name.replace(" ", "-")
    if style == 2:
        return name.upper()
    spec = ClassSpec.parse(name)
    texture = [] if spec.texture == "solid" else [FRENCH_TEXTURES[spec.texture]]
    return " ".join([FRENCH_SHAPES[spec.shape], FRENCH_COLOURS[spec.colour], *texture])


def custom_names(classes: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Demo name -> custom name of every class (raises :class:`DemoDataError` if two would coincide)."""
    names = {name: custom_name(name, k) for k, name in enumerate(classes)}
    if len(set(names.values())) != len(names):
        raise DemoDataError(f"custom names coincide: {names}")
    return names


def _file_name(split: str, image_id: int, name: str) -> str:
    if split == "train":
        return f"shelf-{image_id % 2}/{name}"
    return f"shelf {image_id % 2}/level-{image_id % 3}/{name}"


def _convert(demo: dict, split: str) -> dict:
    """The custom view of one demo split (see the module docstring)."""
    demo_cats = sorted(demo["categories"], key=lambda c: c["id"])
    names = custom_names([c["name"] for c in demo_cats])
    new_cat = {c["id"]: category_id(k) for k, c in enumerate(demo_cats)}
    categories = sorted(
        ({"id": new_cat[c["id"]], "name": names[c["name"]], "supercategory": "shape"} for c in demo_cats),
        key=lambda c: -c["id"],
    )
    images = [
        {**im, "id": 1000 * im["id"] + 7, "file_name": _file_name(split, im["id"], im["file_name"])}
        for im in demo["images"]
    ]
    annotations = []
    for a in demo["annotations"]:
        ann = {**a, "image_id": 1000 * a["image_id"] + 7, "category_id": new_cat[a["category_id"]]}
        if split == "train":
            if a["iscrowd"]:
                continue
            ann = {k: v for k, v in ann.items() if k not in ("segmentation", "area", "iscrowd")}
        annotations.append(ann)
    return {"info": {"description": f"custom view of the demo {split} split"}, "images": images,
            "annotations": annotations, "categories": categories}  # fmt: skip


def write_custom(demo_dir: Path, out_dir: Path) -> None:
    """Write the custom dataset of the demo dataset under ``demo_dir`` (its ``images/`` and
    ``annotations/instances_{train,val}.json``) to ``out_dir``."""
    for split in ("train", "val"):
        demo = atomic.read_json(demo_dir / "annotations" / f"instances_{split}.json")
        custom = _convert(demo, split)
        for old, new in zip(demo["images"], custom["images"], strict=True):
            target = out_dir / "images" / split / new["file_name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic.atomic_path(target, suffix=".jpg") as tmp:
                shutil.copyfile(demo_dir / "images" / split / old["file_name"], tmp)
        atomic.write_json(out_dir / "annotations" / f"{split}.json", custom)
