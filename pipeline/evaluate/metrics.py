"""The numbers and files shared by the evaluations of the ``evaluate`` stage.

Reading the APIs
    pycocotools and lvis-api report fractions with ``-1`` for "undefined" (no ground truth); :func:`_pct` turns
    one into percent or ``None``, :func:`_mean_valid` is their reduction (the mean of the entries > -1, else -1),
    :func:`_quiet` keeps their progress prints off the stage's stdout.

Precision-recall curves (:func:`_pr_block`)
    From ``precision_kr float [K, R]`` (one category per row in the order of the per-class rows, the 101 recall
    thresholds, read at IoU :data:`PR_IOU` and area all)::

        {"iou": 0.5, "area": "all", "max_dets": int,
         "mean": {group: [R] | None},            # over the group's classes that have GT
         "per_class": [{"category_id", "name", "split", "frequency", "precision": [R] | None}]}

Outputs
    ``per_class_ap.csv`` (:func:`write_per_class_csv`): one row per category and evaluation, columns
    :data:`PER_CLASS_COLUMNS`, ``None`` written as an empty cell. ``metrics.json`` (:func:`build_metrics`) from
    the COCO / LVIS / open-ended reports and the ``inputs`` block ``{name: {"path", "sha256"}}``
    (:func:`pipeline.core.hashing.sha256_file`); its keys are listed in the stage's docstring
    (``python -m pipeline.evaluate --help``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.core import atomic
from pipeline.evaluate.detections import Json

PR_IOU = 0.5
PER_CLASS_COLUMNS = ("dataset", "iou_type", "category_id", "name", "split", "frequency", "num_gt", "ap", "ap50")


def _quiet():
    """pycocotools and lvis-api print progress to stdout; keep the stage's stdout clean."""
    return contextlib.redirect_stdout(io.StringIO())


def _pct(value: float) -> float | None:
    """An API statistic (fraction, -1 = undefined) -> percent or ``None``."""
    value = float(value)
    return None if value == -1 or math.isnan(value) else 100.0 * value


def _mean_valid(s: np.ndarray) -> float:
    """pycocotools' reduction: the mean of the entries > -1, or -1 when there are none."""
    valid = s[s > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def _pr_block(precision_kr: np.ndarray, rows: list[Json], groups: Mapping[str, list[int]], max_dets: int) -> Json:
    """PR-curve JSON from ``precision_kr [K, R]`` (IoU 0.5, area all) and per-class rows in K order."""
    has_gt = ~(precision_kr <= -1).all(axis=1)

    def mean_curve(idx: list[int]) -> list[float] | None:
        idx = [k for k in idx if has_gt[k]]
        if not idx:
            return None
        return np.mean(precision_kr[idx], axis=0).tolist()

    return {
        "iou": PR_IOU,
        "area": "all",
        "max_dets": int(max_dets),
        "mean": {name: mean_curve(idx) for name, idx in groups.items()},
        "per_class": [
            {
                "category_id": row["category_id"],
                "name": row["name"],
                "split": row["split"],
                "frequency": row["frequency"],
                "precision": precision_kr[k].tolist() if has_gt[k] else None,
            }
            for k, row in enumerate(rows)
        ],
    }


def write_per_class_csv(path: Path, rows: Sequence[Json]) -> None:
    """``per_class_ap.csv``: a header of :data:`PER_CLASS_COLUMNS`, one line per row, ``None`` as an empty cell."""
    with atomic.atomic_path(path, suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=PER_CLASS_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in PER_CLASS_COLUMNS})


def build_metrics(coco: Json | None, lvis: Json | None, oe: Json | None, inputs: Json) -> Json:
    """metrics.json from the reports (keys in the module docstring)."""
    metrics: Json = {}
    if coco is not None:
        src, s = "coco", coco["summary"]
    else:
        src, s = "lvis", lvis["summary"]["bbox"]
    for group in ("novel", "base", "all"):
        metrics[f"{group}_ap50"] = s[group]["AP50"]
    for group in ("novel", "base", "all"):
        metrics[f"{group}_ap"] = s[group]["AP"]
    metrics["ov_source"] = src
    if lvis is not None:
        res = lvis["summary"]["bbox"]["results"]
        for key in ("AP", "APr", "APc", "APf", "AP50", "AP75", "APs", "APm", "APl"):
            metrics[key.lower()] = res[key]
        if "segm" in lvis["summary"]:
            for key in ("AP", "APr", "APc", "APf"):
                metrics[f"segm_{key.lower()}"] = lvis["summary"]["segm"]["results"][key]
    if coco is not None:
        metrics["coco"] = coco["summary"]
    if lvis is not None:
        metrics["lvis"] = lvis["summary"]
    if oe is not None:
        metrics["open_ended"] = {
            "accuracy": oe["all"]["accuracy"],
            "not_in_vocab_rate": oe["all"]["not_in_vocab_rate"],
            "base_accuracy": oe["base"]["accuracy"],
            "novel_accuracy": oe["novel"]["accuracy"],
        }
        metrics["open_ended"]["base_named_novel_rate"] = oe["base_named_novel"]["rate"]
        if "object_head" in oe:
            metrics["open_ended"].update(
                object_base_accuracy=oe["object_head"]["base"]["accuracy"],
                object_novel_accuracy=oe["object_head"]["novel"]["accuracy"],
            )
    metrics["inputs"] = inputs
    return metrics
