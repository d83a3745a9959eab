"""The inputs of the ``evaluate`` stage: detections and ground-truth annotation files, checked before any
evaluation runs.

Detections (:func:`load_detections`)
    COCO result format, a JSON list of ``{image_id: int, category_id: int, bbox: [x, y, w, h], score: float}``
    (+ an optional RLE ``segmentation``); every value finite, ``w, h >= 0``. An empty list is valid.
    :func:`check_detections` requires every ``image_id`` / ``category_id`` to be an image / category of the
    annotation file.

Ground truth (:func:`load_gt`)
    A remapped annotation file (``pipeline.formats.annotation_file``: ``images``, ``annotations``,
    ``categories``), every annotation with an ``area``, LVIS categories with a ``frequency`` in
    :data:`LVIS_FREQUENCIES`. :func:`check_remapped` requires the category ids ``0..K-1`` (base classes first)
    and ``0 <= num_base <= K``, which the base / novel slicing by id needs.

Errors are :class:`EvaluationError` (a ``ValueError``) naming the file and the offending index, id or key.
``_num_gt`` counts the non-crowd ground-truth boxes per category id (the per-class rows' ``num_gt``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core import atomic
from pipeline.formats import annotation_file

Json = dict[str, Any]
LVIS_FREQUENCIES = ("r", "c", "f")


class EvaluationError(ValueError):
    """Unusable evaluation input; the message names the file and the offending id or key."""


def load_detections(path: str | Path) -> list[Json]:
    """Read a COCO-result detections file and check every record's fields and types."""
    data = atomic.read_json(path)
    if not isinstance(data, list):
        raise EvaluationError(f"{path}: expected a JSON list of detections, got {type(data).__name__}")
    for i, det in enumerate(data):
        if not isinstance(det, dict):
            raise EvaluationError(f"{path}: detection #{i} is not an object")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in det:
                raise EvaluationError(f"{path}: detection #{i} has no '{key}'")
        for key in ("image_id", "category_id"):
            if not isinstance(det[key], int) or isinstance(det[key], bool):
                raise EvaluationError(f"{path}: detection #{i} has a non-integer {key} {det[key]!r}")
        bbox = det["bbox"]
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
            or bbox[2] < 0
            or bbox[3] < 0
        ):
            raise EvaluationError(f"{path}: detection #{i} has a bbox that is not finite [x, y, w>=0, h>=0]: {bbox}")
        score = det["score"]
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise EvaluationError(f"{path}: detection #{i} has a non-finite score {score!r}")
    return data


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
