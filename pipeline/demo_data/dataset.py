"""Writing the demo dataset: the COCO and LVIS views of a generated split, and the captioned crops on disk.

* :func:`generate_split`: draws and saves every JPEG of a split, returns its COCO dict (1-based category ids,
  polygons / RLE, iscrowd) and the drawn objects per image;
* :func:`frequencies` and :func:`to_lvis`: the LVIS view of a COCO dict (frequency r/c/f, neg and
  not-exhaustive category ids, ``coco_url`` image names, no crowd);
* :func:`write_captions`: the PNG crops and ``captions_{train,test}.json`` of both caption splits.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from pipeline.core import atomic
from pipeline.core.progress import track
from pipeline.world.captions import CaptionOptions, draw_caption_crop
from pipeline.world.draw import SPLIT_INDEX, DemoOptions, DrawnObject, draw_image
from pipeline.world.grammar import SHAPE_SYNONYMS, split_kind

log = logging.getLogger(__name__)


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
    for index in track(range(count), f"drawing {split} images", unit="img", logger=log):
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


def write_captions(
    opts: DemoOptions,
    per_class: int,
    test_per_class: int,
    caption_opts: CaptionOptions = CaptionOptions(),  # noqa: B008 - a frozen dataclass, immutable
) -> None:
    """Write the captioned crops of both caption splits (PNG, lossless) and their caption files (last)."""
    for split, per in (("train", per_class), ("test", test_per_class)):
        folder = opts.out_dir / "captions" / split
        folder.mkdir(parents=True, exist_ok=True)
        records = []
        for index in track(range(per * len(opts.specs)), f"captions {split}", unit="img", logger=log):
            crop = draw_caption_crop(opts.specs, opts.seed, split, index, caption_opts)
            name = f"{index:06d}.png"
            with atomic.atomic_path(folder / name, suffix=".png") as tmp:
                Image.fromarray(crop.image).save(tmp, format="PNG")
            records.append({"file_name": name, "caption": crop.caption, "category": opts.specs[crop.category].name})
        atomic.write_json(opts.out_dir / "captions" / f"captions_{split}.json", records)
        log.info("captions %s: %d crops of %d classes", split, len(records), len(opts.specs))
