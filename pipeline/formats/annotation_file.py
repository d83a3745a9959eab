"""Annotation files: COCO- and LVIS-format JSON, read and checked the same way by every stage.

Shape::

    {"images": [{"id", ...}],                       # LVIS: + "neg_category_ids", "not_exhaustive_category_ids"
     "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], ("area"), ...}],
     "categories": [{"id", "name", ...}]}           # LVIS: + "frequency", "synonyms", ...

:func:`validate` checks that structure (the :data:`_REQUIRED` fields of every record; for LVIS the
:data:`LVIS_IMAGE_LISTS` of every image), unique ids and category names, that every annotation points at a known
image and category, that every bbox is four finite numbers and every ``area`` a finite number, and that the LVIS
image lists name known categories. :func:`load` reads a file and validates it; nothing is dropped or changed.
Errors are :class:`AnnotationError` (a ``ValueError``) naming the file and the first offending key, id or name.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.core import atomic

Json = dict[str, Any]

_REQUIRED = {
    "images": ("id",),
    "annotations": ("id", "image_id", "category_id", "bbox"),
    "categories": ("id", "name"),
}
LVIS_IMAGE_LISTS = ("neg_category_ids", "not_exhaustive_category_ids")


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the message names the file and the offending record."""


def validate(data: Any, source: str, lvis: bool = False) -> None:
    """Check the structure and referential integrity of a COCO- or LVIS-format dict.

    Raises:
        AnnotationError: naming ``source`` and the first offending key, id or name.
    """
    if not isinstance(data, dict):
        raise AnnotationError(f"{source}: top level must be an object with images/annotations/categories")
    for key, fields in _REQUIRED.items():
        if key not in data:
            raise AnnotationError(f"{source}: missing key '{key}'")
        if not isinstance(data[key], list):
            raise AnnotationError(f"{source}: '{key}' must be a list")
        for i, record in enumerate(data[key]):
            if not isinstance(record, dict):
                raise AnnotationError(f"{source}: {key}[{i}] is not an object")
            for field in fields:
                if field not in record:
                    rid = record.get("id", f"#{i}")
                    raise AnnotationError(f"{source}: {key}[{i}] (id {rid}) has no '{field}'")
    for key in _REQUIRED:
        counts = Counter(r["id"] for r in data[key])
        dup = sorted(i for i, n in counts.items() if n > 1)
        if dup:
            what = {"images": "image", "annotations": "annotation", "categories": "category"}[key]
            raise AnnotationError(f"{source}: duplicate {what} id(s) {dup[:10]}")
    names = Counter(c["name"] for c in data["categories"])
    dup_names = sorted(n for n, k in names.items() if k > 1)
    if dup_names:
        raise AnnotationError(f"{source}: duplicate category name(s) {dup_names[:10]}")
    image_ids = {im["id"] for im in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    for ann in data["annotations"]:
        if ann["image_id"] not in image_ids:
            raise AnnotationError(f"{source}: annotation {ann['id']} points at unknown image {ann['image_id']}")
        if ann["category_id"] not in cat_ids:
            raise AnnotationError(f"{source}: annotation {ann['id']} points at unknown category {ann['category_id']}")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise AnnotationError(f"{source}: annotation {ann['id']} has a bbox that is not [x, y, w, h]: {bbox!r}")
        if not all(math.isfinite(v) for v in bbox):
            raise AnnotationError(f"{source}: annotation {ann['id']} has a non-finite bbox {bbox}")
        if "area" in ann and not (_is_number(ann["area"]) and math.isfinite(ann["area"])):
            raise AnnotationError(
                f"{source}: annotation {ann['id']} has a non-finite or non-numeric area {ann['area']!r}"
            )
    if lvis:
        for im in data["images"]:
            for field in LVIS_IMAGE_LISTS:
                if field not in im:
                    raise AnnotationError(f"{source}: image {im['id']} has no '{field}'")
                unknown = [c for c in im[field] if c not in cat_ids]
                if unknown:
                    raise AnnotationError(f"{source}: image {im['id']} {field} names unknown categories {unknown}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load(path: Path, lvis: bool = False) -> Json:
    """Read and :func:`validate` an annotation file (nothing is dropped)."""
    data = atomic.read_json(path)
    validate(data, str(path), lvis=lvis)
    return data


def vocabulary(files: Iterable[str | Path]) -> list[str]:
    """Sorted union of the category names of annotation files (COCO or LVIS format)."""
    names: set[str] = set()
    for f in files:
        cats = atomic.read_json(f).get("categories")
        if not isinstance(cats, list):
            raise AnnotationError(f"{f}: no 'categories' list")
        names.update(c["name"] for c in cats)
    return sorted(names)
