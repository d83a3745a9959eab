"""Stage ``annotations``: open-vocabulary annotation files (method §2).

Subcommands (one per rule of the family)::

    coco  instances_{split}2017.json -> .65.json (all 65 classes) and .48.json (base annotations only)
    lvis  lvis_v1_{split}.json       -> .1203.json and .866.json
    demo  demo instances_{split}.json -> {split}.all.json and {split}.base.json (split from the config)
    custom a user's COCO-format file  -> {split}.all.json and {split}.base.json (novel names from the config, base
          = the others or named), checked first (pipeline.formats.custom_dataset); iscrowd 0 and area w * h
          filled in where missing
    min   a remapped file            -> the same restricted to images with >= 1 annotation (crowd counts)
    lvis-extras lvis_v1_train.json   -> Detic/MM-OVOD lvis_v1_train.norare.json and lvis_v1_train_cat_info.json

Class names are data: ``--novel "red star" --novel=-odd`` (repeatable; the ``--novel=NAME`` form, which the rules
use, keeps a name that starts with ``-`` a name).

Every output keeps exactly ``images``, ``annotations``, ``categories``; category ids are remapped to the index in
``bases + novels`` (LVIS: also every image's ``neg_category_ids`` / ``not_exhaustive_category_ids``); the
categories list is sorted by the new id. The base file keeps **all** images and **all** categories but only the
annotations of base classes. Inputs are validated before anything is written (a NaN or infinite bbox or area is an
error naming the file and the annotation id); annotations whose box mmdet would skip at load (``w < 1``, ``h < 1``,
``area <= 0``, or nothing left after clipping to the image: :func:`is_degenerate`) are dropped from every output,
with their count in the log. Outputs are written atomically.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.core import atomic, cli, vocab
from pipeline.core.options import Stage, option
from pipeline.formats import custom_dataset
from pipeline.formats.annotation_file import LVIS_IMAGE_LISTS, load
from pipeline.formats.annotation_file import AnnotationError as AnnotationError  # re-exported
from pipeline.formats.annotation_file import validate as validate  # re-exported

log = logging.getLogger(__name__)
STAGE = Stage("python -m pipeline.annotations", __doc__)

Json = dict[str, Any]


def is_degenerate(ann: Mapping, image: Mapping) -> bool:
    """Whether mmdet's ``CocoDataset.parse_data_info`` skips ``ann`` when it loads the file.

    Its rule: the box clipped to the image (when the image has ``width`` and ``height``) has zero area, or
    ``area <= 0`` (when the annotation has an ``area``), or ``w < 1`` or ``h < 1``. Crowd boxes follow the same rule.
    """
    x, y, w, h = ann["bbox"]
    if w < 1 or h < 1:
        return True
    if "area" in ann and ann["area"] <= 0:
        return True
    if "width" in image and "height" in image:
        inter_w = max(0, min(x + w, image["width"]) - max(x, 0))
        inter_h = max(0, min(y + h, image["height"]) - max(y, 0))
        if inter_w * inter_h == 0:
            return True
    return False


def drop_degenerate(data: Json, source: str) -> Json:
    """``data`` (already validated) without the annotations of :func:`is_degenerate` boxes; logs how many were
    dropped, naming ``source`` and the first ids. Images and categories are kept as they are."""
    images = {im["id"]: im for im in data["images"]}
    kept, dropped = [], []
    for ann in data["annotations"]:
        (dropped if is_degenerate(ann, images[ann["image_id"]]) else kept).append(ann)
    if dropped:
        log.warning(
            "%s: dropped %d of %d annotations with degenerate boxes (w < 1, h < 1, area <= 0 or outside the "
            "image), ids %s%s",
            source,
            len(dropped),
            len(data["annotations"]),
            [a["id"] for a in dropped[:10]],
            " ..." if len(dropped) > 10 else "",
        )
    else:
        log.info("%s: no degenerate boxes", source)
    return {**data, "annotations": kept}


def load_source(path: Path, lvis: bool = False) -> Json:
    """:func:`load` a stage input and :func:`drop_degenerate` its annotations: every file the stage writes holds
    only the boxes mmdet trains on."""
    return drop_degenerate(load(path, lvis=lvis), str(path))


@dataclass(frozen=True)
class Remapped:
    """The two views of one remapped file: all split classes and base-only annotations."""

    all: Json
    base: Json


def remap(data: Json, split: vocab.Split, lvis: bool = False) -> Remapped:
    """Apply method §2.2 steps 1-3 to ``data`` (already validated).

    Categories outside ``split`` and their annotations are dropped; all images are kept. Category ids become
    the index in ``split.names``. For LVIS the per-image category lists are remapped too (entries of dropped
    categories are removed).
    """
    new_id = split.new_id()
    old_to_new = {c["id"]: new_id[c["name"]] for c in data["categories"] if c["name"] in new_id}
    categories = sorted(
        ({**c, "id": old_to_new[c["id"]]} for c in data["categories"] if c["id"] in old_to_new),
        key=lambda c: c["id"],
    )
    annotations = [
        {**a, "category_id": old_to_new[a["category_id"]]}
        for a in data["annotations"]
        if a["category_id"] in old_to_new
    ]
    images = data["images"]
    if lvis:
        images = [
            {**im, **{f: [old_to_new[c] for c in im[f] if c in old_to_new] for f in LVIS_IMAGE_LISTS}} for im in images
        ]
    full = {"images": images, "annotations": annotations, "categories": categories}
    base = {
        "images": images,
        "annotations": [a for a in annotations if a["category_id"] < split.num_bases],
        "categories": categories,
    }
    return Remapped(full, base)


def with_defaults(data: Json) -> Json:
    """``data`` with the optional annotation fields that evaluation and training read filled in where missing:
    ``iscrowd`` 0 and ``area`` = box width x height (a user's file may have neither)."""
    annotations = [
        {"iscrowd": 0, **a, **({} if "area" in a else {"area": float(a["bbox"][2] * a["bbox"][3])})}
        for a in data["annotations"]
    ]
    return {**data, "annotations": annotations}


def restrict_to_annotated(data: Json) -> Json:
    """Keep only images with at least one annotation (crowd annotations count): the ``.min`` eval set."""
    annotated = {a["image_id"] for a in data["annotations"]}
    images = [im for im in data["images"] if im["id"] in annotated]
    return {"images": images, "annotations": data["annotations"], "categories": data["categories"]}


def without_rare(data: Json) -> Json:
    """Detic/MM-OVOD ``lvis_v1_train.norare.json``: rare-class annotations dropped, original LVIS ids kept."""
    rare = {c["id"] for c in data["categories"] if c.get("frequency") == vocab.LVIS_NOVEL_FREQUENCY}
    return {
        "images": data["images"],
        "annotations": [a for a in data["annotations"] if a["category_id"] not in rare],
        "categories": data["categories"],
    }


def category_info(data: Json) -> list[Json]:
    """Detic/MM-OVOD ``lvis_v1_train_cat_info.json``: each category with ``image_count`` and ``instance_count``
    counted from the annotations, in category-id order, original ids."""
    images: dict[int, set[int]] = defaultdict(set)
    instances: Counter[int] = Counter()
    for a in data["annotations"]:
        images[a["category_id"]].add(a["image_id"])
        instances[a["category_id"]] += 1
    return [
        {**c, "image_count": len(images[c["id"]]), "instance_count": instances[c["id"]]}
        for c in sorted(data["categories"], key=lambda c: c["id"])
    ]


def summary(name: str, data: Mapping[str, Sequence]) -> str:
    counts = (len(data[k]) for k in ("images", "annotations", "categories"))
    return "{}: {} images, {} annotations, {} categories".format(name, *counts)


# ---------------------------------------------------------------------------------------------------------- CLI

_INPUT_HELP = "source annotation JSON (input)"


@dataclass(frozen=True)
class CocoOptions:
    """coco: OV-COCO files, all 65 classes (--out-all) and the 48 base classes' annotations (--out-base)."""

    input: Path = option(help=_INPUT_HELP)
    out_all: Path = option(help="output JSON: every class of the split")
    out_base: Path = option(help="output JSON: base annotations only")


@dataclass(frozen=True)
class LvisOptions(CocoOptions):
    """lvis: OV-LVIS files, all 1203 classes (--out-all) and the 866 base classes' annotations (--out-base)."""


@dataclass(frozen=True, kw_only=True)
class DemoSplitOptions(CocoOptions):
    """demo: demo files with the base / novel split given by category name."""

    base: tuple[str, ...] = option(help="base category names", nargs="+")
    novel: tuple[str, ...] = option(help="novel category names", nargs="+")


@dataclass(frozen=True, kw_only=True)
class CustomOptions(CocoOptions):
    """custom: a user's COCO-format split file (dataset custom), checked, then split by name."""

    images: Path = option(help="the split's image folder (input; every file_name must exist there, none is read)")
    split: Literal["train", "val"] = option(help="train needs a base box, val a box of any class of the split")
    novel: tuple[str, ...] = option(help="novel category names", nargs="+")
    base: tuple[str, ...] = option((), help="base category names (none: every category that is not novel)")


@dataclass(frozen=True)
class MinOptions:
    """min: a remapped file restricted to images with >= 1 annotation."""

    input: Path = option(help=_INPUT_HELP)
    output: Path = option(help="output JSON")


@dataclass(frozen=True)
class LvisExtrasOptions:
    """lvis-extras: Detic/MM-OVOD lvis_v1_train.norare.json and lvis_v1_train_cat_info.json."""

    input: Path = option(help=_INPUT_HELP)
    out_norare: Path = option(help="output JSON: annotations without rare classes")
    out_cat_info: Path = option(help="output JSON: categories with image and instance counts")


Options = CocoOptions | LvisOptions | DemoSplitOptions | CustomOptions | MinOptions | LvisExtrasOptions


def _write(outputs: Sequence[tuple[Path, Json | list]]) -> None:
    """Write all outputs only after every one of them was computed (nothing half-done on bad input)."""
    for path, obj in outputs:
        atomic.write_json(path, obj)
        log.info("wrote %s", path)


def remap_files(opts: CocoOptions, data: Json, split: vocab.Split, lvis: bool = False) -> None:
    """:func:`remap` ``data`` (validated, degenerate boxes dropped) by ``split`` and write ``--out-all`` and
    ``--out-base``: the one path of every dataset (coco, lvis, demo, custom)."""
    out = remap(data, split, lvis=lvis)
    log.info("%s: %d base / %d novel categories", opts.input, split.num_bases, len(split.novels))
    log.info("%s", summary(str(opts.out_all), out.all))
    _write([(opts.out_all, out.all), (opts.out_base, out.base)])


@STAGE.command("coco", CocoOptions, "OV-COCO 48/17 files")
def run_coco(opts: CocoOptions) -> None:
    data = load_source(opts.input)
    split = vocab.coco_split()
    vocab.check_split(split, data["categories"], str(opts.input))
    remap_files(opts, data, split)


@STAGE.command("lvis", LvisOptions, "OV-LVIS 866/337 files")
def run_lvis(opts: LvisOptions) -> None:
    data = load_source(opts.input, lvis=True)
    remap_files(opts, data, vocab.lvis_split(data["categories"], str(opts.input)), lvis=True)


@STAGE.command("demo", DemoSplitOptions, "demo files with a split given by name")
def run_demo(opts: DemoSplitOptions) -> None:
    data = load_source(opts.input)
    remap_files(opts, data, vocab.named_split(list(opts.base), list(opts.novel), data["categories"], str(opts.input)))


@STAGE.command("custom", CustomOptions, "a user's COCO-format file with a split given by name")
def run_custom(opts: CustomOptions) -> None:
    data, split = custom_dataset.check_split_file(opts.input, opts.images, opts.split, opts.novel, opts.base or None)
    remap_files(opts, with_defaults(drop_degenerate(data, str(opts.input))), split)


@STAGE.command("min", MinOptions, "restrict to images with >= 1 annotation")
def run_min(opts: MinOptions) -> None:
    data = load_source(opts.input)
    _write([(opts.output, restrict_to_annotated(data))])


@STAGE.command("lvis-extras", LvisExtrasOptions, "Detic/MM-OVOD norare + cat_info files")
def run_lvis_extras(opts: LvisExtrasOptions) -> None:
    data = load_source(opts.input, lvis=True)
    vocab.lvis_split(data["categories"], str(opts.input))  # frequencies present and valid
    _write([(opts.out_norare, without_rare(data)), (opts.out_cat_info, category_info(data))])


run, build_parser, main = STAGE.run, STAGE.build_parser, STAGE.main


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
