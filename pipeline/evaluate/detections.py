"""The inputs of the ``evaluate`` stage: detections and ground-truth annotation files, checked before any
evaluation runs.

Detections
    COCO result format, read and checked by :func:`pipeline.formats.detections.load` (``load_detections`` of
    :mod:`pipeline.evaluate`). :func:`check_detections` requires every ``image_id`` / ``category_id`` to be an
    image / category of the annotation file.

Ground truth (:func:`load_gt`)
    A remapped annotation file (``pipeline.formats.annotation_file``: ``images``, ``annotations``,
    ``categories``), every annotation with an ``area``, LVIS categories with a ``frequency`` in
    :data:`LVIS_FREQUENCIES`. :func:`check_remapped` requires the category ids ``0..K-1`` (base classes first)
    and ``0 <= num_base <= K``, which the base / novel slicing by id needs.

Errors are :class:`EvaluationError` (a ``ValueError``; a malformed detections file raises the format's
``DetectionsFileError``, also a ``ValueError``) naming the file and the offending index, id or key.
``_num_gt`` counts the non-crowd ground-truth boxes per category id (the per-class rows' ``num_gt``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.formats import annotation_file

Json = dict[str, Any]
LVIS_FREQUENCIES = ("r", "c", "f")


class EvaluationError(ValueError):
    """Unusable evaluation input; the message names the file and the offending id or key."""


def check_detections(dets: Sequence[Json], gt: Json, det_source: str, gt_source: str) -> None:
    """Every detection must name an image and a category of the annotation file."""
    image_ids = {im["id"] for im in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    for i, det in enumerate(dets):
        if det["image_id"] not in image_ids:
            raise EvaluationError(
                f"{det_source}: detection #{i} names image_id {det['image_id']}, which is not an image of {gt_source}"
            )
        if det["category_id"] not in cat_ids:
            raise EvaluationError(
                f"{det_source}: detection #{i} names category_id {det['category_id']}, which is not a category of "
                f"{gt_source} (ids {min(cat_ids)}..{max(cat_ids)})"
            )


def load_gt(path: str | Path, lvis: bool = False) -> Json:
    """Read and validate a (remapped) annotation file; every annotation needs ``area``, LVIS categories a
    ``frequency`` in r / c / f."""
    data = annotation_file.load(Path(path), lvis=lvis)
    for ann in data["annotations"]:
        if "area" not in ann:
            raise EvaluationError(f"{path}: annotation {ann['id']} has no 'area'")
    if lvis:
        for cat in data["categories"]:
            if cat.get("frequency") not in LVIS_FREQUENCIES:
                raise EvaluationError(
                    f"{path}: category {cat['id']} ('{cat['name']}') has no frequency in {LVIS_FREQUENCIES}"
                )
    return data


def check_remapped(gt: Json, source: str, num_base: int) -> None:
    """Base / novel slicing by id needs the 0..K-1 remapped ids and 0 <= num_base <= K."""
    ids = sorted(c["id"] for c in gt["categories"])
    if ids != list(range(len(ids))):
        raise EvaluationError(
            f"{source}: category ids are not 0..{len(ids) - 1} (first ids {ids[:5]}); base/novel slicing needs the "
            "remapped files of pipeline.annotations"
        )
    if not 0 <= num_base <= len(ids):
        raise EvaluationError(f"{source}: --num-base {num_base} is outside 0..{len(ids)}")


def _num_gt(gt: Json) -> Counter:
    return Counter(a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0))
