"""Detections files: COCO result format, a JSON list of ``{image_id, category_id, bbox [x, y, w, h], score}``
records (+ an RLE ``segmentation`` from detectors with a mask head; + ``category_name`` in ``pipeline.detect``'s
files, whose ids index their own vocabulary). ``pipeline.train predict`` and ``pipeline.detect`` write them with
:func:`detection_record`; ``pipeline.evaluate`` and the report read them with :func:`load`, which checks them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core import atomic


class DetectionsFileError(ValueError):
    """A detections file that is not COCO result format; the message names the file and the record."""


def detection_record(image_id: int, box: Sequence[float], score: float, label: int) -> dict:
    """One COCO-format detection: bbox xywh rounded to 0.01 px; the score keeps 7 significant digits, not a fixed
    number of decimals: the ensemble's novel-class scores are often below 1e-5, and rounding them to 0 ties them
    and loses their ranking (measured on the demo: 4122 of 5454 novel detections were 0, -2.6 novel AP50)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "image_id": int(image_id),
        "category_id": int(label),
        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
        "score": float(f"{float(score):.7g}"),
    }


def load(path: str | Path) -> list[dict[str, Any]]:
    """Read a detections file and check every record's fields and types: ``image_id`` and ``category_id``
    integers, ``bbox`` four finite numbers with ``w, h >= 0``, ``score`` finite. An empty list is valid.

    Raises:
        DetectionsFileError: naming the file and the record's index.
    """
    data = atomic.read_json(path)
    if not isinstance(data, list):
        raise DetectionsFileError(f"{path}: expected a JSON list of detections, got {type(data).__name__}")
    for i, det in enumerate(data):
        if not isinstance(det, dict):
            raise DetectionsFileError(f"{path}: detection #{i} is not an object")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in det:
                raise DetectionsFileError(f"{path}: detection #{i} has no '{key}'")
        for key in ("image_id", "category_id"):
            if not isinstance(det[key], int) or isinstance(det[key], bool):
                raise DetectionsFileError(f"{path}: detection #{i} has a non-integer {key} {det[key]!r}")
        bbox = det["bbox"]
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
            or bbox[2] < 0
            or bbox[3] < 0
        ):
            raise DetectionsFileError(
                f"{path}: detection #{i} has a bbox that is not finite [x, y, w>=0, h>=0]: {bbox}"
            )
        score = det["score"]
        if not isinstance(score, (int, float)) or isinstance(score, bool) or not math.isfinite(score):
            raise DetectionsFileError(f"{path}: detection #{i} has a non-finite score {score!r}")
    return data
