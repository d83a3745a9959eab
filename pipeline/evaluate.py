"""Stage ``evaluate``: OV-COCO / OV-LVIS detection metrics and the open-ended accuracy (method section 7).

Command::

    python -m pipeline.evaluate --detections DETS.json --out-dir DIR
        [--coco ANN.json --num-base N [--max-dets 100 300 1000]]
        [--lvis LVIS_ANN.json [--num-base N] [--lvis-max-dets 300]]
        [--regions REGIONS.npz --vocab PROMPTS.pth [--vocab-annotations ANN.json ...] [--regions-gt coco|lvis]
         [--synonyms SYN.json] [--relationships REL.json]]

Inputs
    ``DETS.json``: COCO result format, a list of ``{image_id, category_id, bbox [x, y, w, h], score}`` (+ RLE
    ``segmentation``, used for LVIS mask AP when every detection has one). Category ids are the *remapped* ids of
    the annotation files (``pipeline.annotations``: 0-based, base classes first). An empty list is valid (AP 0).
    A detection naming an image or category the annotation file does not have is an error naming both files,
    the detection's index and the id.

OV-COCO (generalized setting, ``--coco``)
    pycocotools ``COCOeval`` (bbox) over every category and image of the file, ``maxDets=[100, 300, 1000]``;
    ``evaluate()`` and ``accumulate()`` run once, then pycocotools' ``summarize()`` is reproduced on the
    precision ``[T, R, K, A, M]`` / recall ``[T, K, A, M]`` arrays sliced along K for all / base (id <
    ``--num-base``) / novel categories. As in pycocotools, AP@[.5:.95] is read at the maxDets entry equal to
    100 and AP50, AP75, APs/m/l at ``maxDets[2]`` (1000); AR at each maxDets and ARs/m/l at ``maxDets[2]``.

OV-LVIS (``--lvis``)
    lvis-api ``LVISEval`` (bbox; also segm when the detections carry ``segmentation``), 300 detections per
    image. APr/APc/APf come from the categories' ``frequency``. all / base / novel slices as for COCO: base =
    id < ``--num-base`` when given, otherwise the c + f categories (novel = r, the OV-LVIS split).

Undefined values
    A summary over categories that have no ground truth is ``-1`` in pycocotools / lvis-api; here it is
    ``null`` (JSON) / an empty CSV cell, never a number. Every other value is in percent (100 x the APIs').

Outputs (each written atomically)
    ``DIR/metrics.json``::

        {"novel_ap50", "base_ap50", "all_ap50", "novel_ap", "base_ap", "all_ap",   # contract; from COCO when
                                                                                   # --coco, else LVIS bbox
         "ov_source": "coco" | "lvis",
         "ap", "apr", "apc", "apf", "ap50", "ap75", "aps", "apm", "apl",            # with --lvis (bbox)
         "segm_ap", "segm_apr", "segm_apc", "segm_apf",                            # with --lvis and masks
         "coco": {"all" | "base" | "novel": {"AP", "AP50", "AP75", "APs", "APm", "APl",
                                             "AR@100", "AR@300", "AR@1000", "ARs", "ARm", "ARl"},
                  "aliases": {"COCO_48_17_bbox_mAP", "COCO_48_bbox_mAP_50", "COCO_17_bbox_mAP_50", ...},
                  "num_base", "num_categories", "num_images", "num_detections", "max_dets", "iou_type"},
         "lvis": {"bbox" | "segm": {"results": lvis-api results in percent (AP, AP50, ..., APr, APc, APf,
                                               "AR@300", ...),
                                    "all" | "base" | "novel": {"AP", "AP50", "AP75", "APs", "APm", "APl"}},
                  "split": "num_base" | "frequency", "num_base", "num_categories", "num_images", "max_dets"},
         "open_ended": {"accuracy", "not_in_vocab_rate", "base_accuracy", "novel_accuracy",   # with --regions
                        "base_named_novel_rate",
                        "object_base_accuracy", "object_novel_accuracy"},  # regions with object_embeddings
         "inputs": {name: {"path", "sha256"}}}

    The aliases use the reference's names (``COCO_{B}_{N}_`` = all, ``COCO_{B}_`` = base, ``COCO_{N}_`` =
    novel, with B / N the numbers of base / novel categories) and hold the same percent values.

    ``DIR/per_class_ap.csv`` and ``DIR/per_class_ap.json`` (a list of the same rows), one row per category and
    evaluation: ``dataset`` (coco | lvis), ``iou_type`` (bbox | segm), ``category_id``, ``name``, ``split`` (base
    | novel), ``frequency`` (r | c | f for LVIS, empty for COCO), ``num_gt`` (non-crowd ground-truth boxes),
    ``ap`` (AP@[.5:.95], COCO at maxDets 100), ``ap50`` (COCO at ``maxDets[2]``); null / empty without GT.

    ``DIR/pr_curves.json`` (precision at IoU 0.5, area all, over the 101 recall thresholds)::

        {"recall": [0.0, 0.01, ..., 1.0],
         "coco": {"iou": 0.5, "area": "all", "max_dets": 1000,
                  "mean": {"all": [101], "base": [101], "novel": [101]},
                  "per_class": [{"category_id", "name", "split", "frequency", "precision": [101]}]},
         "lvis": {... same, max_dets 300, "mean" also has "r", "c", "f"}}           # bbox only

    A mean curve averages the classes that have ground truth (pycocotools' -1 entries are ignored); its mean
    over the recall thresholds is the group's AP50. ``precision`` / a mean is null when there is no GT.

    ``DIR/open_ended.json`` (with ``--regions``, :mod:`pipeline.open_ended`): every ground-truth region of
    ``REGIONS.npz`` is named by the argmax cosine between its embedding and the vocabulary file's names
    (``--vocab``, optionally restricted to the category names of ``--vocab-annotations``); the name is scored
    with the OSM string-matching protocol against the GT file's category (``--regions-gt``, default lvis when
    given): synonyms from the file's LVIS ``synonyms`` field and ``--synonyms``, plural forms, crowd skipped::

        {"protocol": "osm", "gt": "coco" | "lvis", "vocabulary": {"file", "size", "restricted_to",
         "not_in_dataset"}, "n_regions",
         "all" | "base" | "novel" (| "r" | "c" | "f"): {"accuracy", "not_in_vocab_rate", "n", "n_correct",
                                                        "n_not_in_vocab", "n_crowd_skipped"},
         "base_named_novel": {"n", "n_named_novel", "rate"},   # base boxes given a novel class's name
         "object_head": {"all" | "base" | "novel" (| ...): {...}, "base_named_novel"},   # with object_embeddings
         "per_class": {name: {"n", "accuracy", "not_in_vocab_rate"}},
         "top_confusions": [{"gt", "pred", "count"}],
         "lac": {"levels": {"exact" | "synonyms" | "hyponyms" | "meronyms": {...}}}}   # with --relationships
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import annotations, atomic, cli, open_ended

log = logging.getLogger(__name__)

Json = dict[str, Any]
COCO_MAX_DETS = (100, 300, 1000)
LVIS_MAX_DETS = 300
LVIS_FREQUENCIES = ("r", "c", "f")
PR_IOU = 0.5
PER_CLASS_COLUMNS = ("dataset", "iou_type", "category_id", "name", "split", "frequency", "num_gt", "ap", "ap50")


class EvaluationError(ValueError):
    """Unusable evaluation input; the message names the file and the offending id or key."""


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


# ------------------------------------------------------------------------------------------- inputs


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
    data = annotations.load(Path(path), lvis=lvis)
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- COCO


def coco_gt(data: Json):
    """A pycocotools ``COCO`` over a dict (annotation records copied: COCOeval writes into them)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {
        "images": data["images"],
        "annotations": [dict(a) for a in data["annotations"]],
        "categories": data["categories"],
    }
    with _quiet():
        coco.createIndex()
    return coco


def coco_dt(gt, dets: Sequence[Json]):
    """The results ``COCO``; ``loadRes`` cannot take an empty list, so that case is an empty index."""
    from pycocotools.coco import COCO

    if not dets:
        res = COCO()
        res.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
        with _quiet():
            res.createIndex()
        return res
    records = [{k: d[k] for k in ("image_id", "category_id", "bbox", "score")} for d in dets]
    with _quiet():
        return gt.loadRes(records)


def run_coco_eval(gt_data: Json, dets: Sequence[Json], max_dets: Sequence[int] = COCO_MAX_DETS, cat_ids=None):
    """``COCOeval`` (bbox) over every image, ``cat_ids`` (default: every category), ``max_dets``;
    ``evaluate()`` + ``accumulate()`` done, ``summarize()`` not."""
    from pycocotools.cocoeval import COCOeval

    gt = coco_gt(gt_data)
    E = COCOeval(gt, coco_dt(gt, dets), "bbox")
    E.params.imgIds = sorted(gt.getImgIds())
    E.params.catIds = sorted(gt.getCatIds() if cat_ids is None else cat_ids)
    E.params.maxDets = list(max_dets)
    with _quiet():
        E.evaluate()
        E.accumulate()
    return E


def coco_stats(E, cat_ids: Sequence[int] | None = None) -> dict[str, float | None]:
    """pycocotools ``summarize()`` (bbox) restricted to ``cat_ids`` by slicing K, in percent (None = -1).

    Same reads as pycocotools: AP at the maxDets entry equal to 100, AP50 / AP75 / APs / APm / APl and
    ARs / ARm / ARl at ``maxDets[2]``, AR at each maxDets.
    """
    p = E.params
    pos = {c: k for k, c in enumerate(p.catIds)}
    k = [pos[c] for c in (p.catIds if cat_ids is None else cat_ids)]
    precision = E.eval["precision"][:, :, k]
    recall = E.eval["recall"][:, k]

    def summarize(ap: bool, iou: float | None = None, area: str = "all", max_det: int = 100) -> float:
        aind = [i for i, a in enumerate(p.areaRngLbl) if a == area]
        mind = [i for i, m in enumerate(p.maxDets) if m == max_det]
        s = precision if ap else recall
        if iou is not None:
            s = s[np.where(iou == p.iouThrs)[0]]
        s = s[:, :, :, aind, mind] if ap else s[:, :, aind, mind]
        return _mean_valid(s)

    m = p.maxDets
    stats = {
        "AP": summarize(True),
        "AP50": summarize(True, iou=0.5, max_det=m[2]),
        "AP75": summarize(True, iou=0.75, max_det=m[2]),
        "APs": summarize(True, area="small", max_det=m[2]),
        "APm": summarize(True, area="medium", max_det=m[2]),
        "APl": summarize(True, area="large", max_det=m[2]),
        f"AR@{m[0]}": summarize(False, max_det=m[0]),
        f"AR@{m[1]}": summarize(False, max_det=m[1]),
        f"AR@{m[2]}": summarize(False, max_det=m[2]),
        "ARs": summarize(False, area="small", max_det=m[2]),
        "ARm": summarize(False, area="medium", max_det=m[2]),
        "ARl": summarize(False, area="large", max_det=m[2]),
    }
    return {key: _pct(v) for key, v in stats.items()}


_ALIAS_SUFFIX = {"AP": "", "AP50": "_50", "AP75": "_75", "APs": "_s", "APm": "_m", "APl": "_l"}


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


def coco_report(gt: Json, dets: Sequence[Json], num_base: int, max_dets: Sequence[int] = COCO_MAX_DETS) -> Json:
    """OV-COCO metrics: ``{"summary", "per_class", "pr"}`` (see the module docstring)."""
    E = run_coco_eval(gt, dets, max_dets)
    p = E.params
    cat_ids = [int(c) for c in p.catIds]  # COCOeval.evaluate() makes them numpy integers
    base = [c for c in cat_ids if c < num_base]
    novel = [c for c in cat_ids if c >= num_base]
    summary = {"all": coco_stats(E), "base": coco_stats(E, base), "novel": coco_stats(E, novel)}
    nb, nn = len(base), len(novel)
    prefixes = {"all": f"COCO_{nb}_{nn}_bbox_mAP", "base": f"COCO_{nb}_bbox_mAP", "novel": f"COCO_{nn}_bbox_mAP"}
    summary["aliases"] = {
        prefixes[g] + suffix: summary[g][stat] for g in prefixes for stat, suffix in _ALIAS_SUFFIX.items()
    }
    summary.update(
        num_base=nb,
        num_categories=len(cat_ids),
        num_images=len(p.imgIds),
        num_detections=len(dets),
        max_dets=list(p.maxDets),
        iou_type="bbox",
    )
    names = {c["id"]: c["name"] for c in gt["categories"]}
    counts = _num_gt(gt)
    a_all = p.areaRngLbl.index("all")
    t50 = int(np.where(p.iouThrs == PR_IOU)[0][0])
    m100 = [i for i, m in enumerate(p.maxDets) if m == 100]
    precision = E.eval["precision"]
    rows = []
    for k, cid in enumerate(cat_ids):
        ap = _mean_valid(precision[:, :, k, a_all, m100]) if m100 else -1.0
        rows.append(
            {
                "dataset": "coco",
                "iou_type": "bbox",
                "category_id": cid,
                "name": names[cid],
                "split": "base" if cid < num_base else "novel",
                "frequency": None,
                "num_gt": counts.get(cid, 0),
                "ap": _pct(ap),
                "ap50": _pct(_mean_valid(precision[t50, :, k, a_all, 2])),
            }
        )
    groups = {
        "all": list(range(len(cat_ids))),
        "base": [k for k, c in enumerate(cat_ids) if c < num_base],
        "novel": [k for k, c in enumerate(cat_ids) if c >= num_base],
    }
    pr = _pr_block(precision[t50, :, :, a_all, 2].T, rows, groups, p.maxDets[2])
    return {"summary": summary, "per_class": rows, "pr": pr}


# ------------------------------------------------------------------------------------------- LVIS


def lvis_gt(data: Json):
    """An lvis-api ``LVIS`` over a dict (``LVIS()`` only reads paths; annotation records copied because
    ``LVISEval`` writes into them)."""
    from lvis import LVIS

    gt = LVIS.__new__(LVIS)
    gt.logger = logging.getLogger("lvis.lvis")
    gt.dataset = {
        "images": data["images"],
        "annotations": [dict(a) for a in data["annotations"]],
        "categories": data["categories"],
    }
    gt._create_index()
    return gt


def lvis_dt(gt, dets: Sequence[Json], max_dets: int = LVIS_MAX_DETS):
    """``LVISResults`` (top ``max_dets`` per image); an empty list becomes an empty index (lvis-api cannot)."""
    from lvis import LVISResults

    if not dets:
        res = LVISResults.__new__(LVISResults)
        res.logger = logging.getLogger("lvis.results")
        res.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
        res._create_index()
        return res
    keys = ("image_id", "category_id", "bbox", "score", "segmentation")
    records = [{k: d[k] for k in keys if k in d} for d in dets]
    lvis_logger = logging.getLogger("lvis.results")
    level = lvis_logger.level
    lvis_logger.setLevel(logging.ERROR)  # "Assuming user provided the results in correct format."
    try:
        return LVISResults(gt, records, max_dets=max_dets)
    finally:
        lvis_logger.setLevel(level)


def run_lvis_eval(gt_data: Json, dets: Sequence[Json], iou_type: str = "bbox", max_dets: int = LVIS_MAX_DETS):
    """``LVISEval`` run (evaluate, accumulate, summarize) over every image and category."""
    from lvis import LVISEval

    from pipeline.compat import patch_lvis_numpy

    patch_lvis_numpy()
    gt = lvis_gt(gt_data)
    E = LVISEval(gt, lvis_dt(gt, dets, max_dets), iou_type)
    E.params.max_dets = max_dets
    with _quiet():
        E.run()
    return E


def lvis_stats(E, cat_ids: Sequence[int] | None = None) -> dict[str, float | None]:
    """lvis-api's AP summaries over ``cat_ids`` (default all) by slicing K of ``precision [T, R, K, A]``."""
    p = E.params
    pos = {c: k for k, c in enumerate(p.cat_ids)}
    k = [pos[c] for c in (p.cat_ids if cat_ids is None else cat_ids)]
    precision = E.eval["precision"][:, :, k]

    def summarize(iou: float | None = None, area: str = "all") -> float:
        a = p.area_rng_lbl.index(area)
        s = precision if iou is None else precision[np.where(iou == p.iou_thrs)[0]]
        return _mean_valid(s[..., a])

    stats = {
        "AP": summarize(),
        "AP50": summarize(0.5),
        "AP75": summarize(0.75),
        "APs": summarize(area="small"),
        "APm": summarize(area="medium"),
        "APl": summarize(area="large"),
    }
    return {key: _pct(v) for key, v in stats.items()}


def lvis_report(
    gt: Json,
    dets: Sequence[Json],
    num_base: int | None = None,
    max_dets: int = LVIS_MAX_DETS,
    det_source: str = "detections",
    gt_source: str = "LVIS annotations",
) -> Json:
    """OV-LVIS metrics: ``{"summary", "per_class", "pr"}``; segm too when every detection has a mask."""
    with_masks = [("segmentation" in d) for d in dets]
    iou_types = ["bbox"]
    if any(with_masks):
        if not all(with_masks):
            raise EvaluationError(
                f"{det_source}: detection #{with_masks.index(False)} has no 'segmentation' while others do"
            )
        missing = [a["id"] for a in gt["annotations"] if "segmentation" not in a]
        if missing:
            raise EvaluationError(f"{gt_source}: annotation {missing[0]} has no 'segmentation' (needed for mask AP)")
        iou_types.append("segm")
    cats = {c["id"]: c for c in gt["categories"]}

    def is_base(cid: int) -> bool:
        return cid < num_base if num_base is not None else cats[cid]["frequency"] != "r"

    summary: Json = {
        "split": "num_base" if num_base is not None else "frequency",
        "num_base": sum(is_base(c) for c in cats),
        "num_categories": len(cats),
        "num_images": len(gt["images"]),
        "num_detections": len(dets),
        "max_dets": max_dets,
    }
    counts = _num_gt(gt)
    rows: list[Json] = []
    pr = None
    for iou_type in iou_types:
        E = run_lvis_eval(gt, dets, iou_type, max_dets)
        p = E.params
        cat_ids = [int(c) for c in p.cat_ids]
        base = [c for c in cat_ids if is_base(c)]
        novel = [c for c in cat_ids if not is_base(c)]
        summary[iou_type] = {
            "results": {k: _pct(v) for k, v in E.results.items()},
            "all": lvis_stats(E),
            "base": lvis_stats(E, base),
            "novel": lvis_stats(E, novel),
        }
        precision = E.eval["precision"]
        t50 = int(np.where(p.iou_thrs == PR_IOU)[0][0])
        a_all = p.area_rng_lbl.index("all")
        these = []
        for k, cid in enumerate(cat_ids):
            these.append(
                {
                    "dataset": "lvis",
                    "iou_type": iou_type,
                    "category_id": cid,
                    "name": cats[cid]["name"],
                    "split": "base" if is_base(cid) else "novel",
                    "frequency": cats[cid]["frequency"],
                    "num_gt": counts.get(cid, 0),
                    "ap": _pct(_mean_valid(precision[:, :, k, a_all])),
                    "ap50": _pct(_mean_valid(precision[t50, :, k, a_all])),
                }
            )
        rows += these
        if iou_type == "bbox":
            ks = range(len(cat_ids))
            groups = {
                "all": list(ks),
                "base": [k for k in ks if is_base(cat_ids[k])],
                "novel": [k for k in ks if not is_base(cat_ids[k])],
                **{f: [k for k in ks if cats[cat_ids[k]]["frequency"] == f] for f in LVIS_FREQUENCIES},
            }
            pr = _pr_block(precision[t50, :, :, a_all].T, these, groups, max_dets)
    return {"summary": summary, "per_class": rows, "pr": pr}


# ------------------------------------------------------------------------------------------- open-ended


def _base_named_novel(regions, predictions: Sequence[str], categories: Sequence[Json], groups) -> Json:
    """How many non-crowd base-class boxes get the exact name of a novel class: a classifier whose never-trained
    novel columns outscore the base ones (a "hub") shows here."""
    by_id = {c["id"]: c for c in categories}
    novel = {open_ended.normalize(c["name"]) for c in categories if groups["novel"](c)}
    idx = [
        i
        for i, (cid, crowd) in enumerate(zip(regions.category_ids.tolist(), regions.iscrowd.tolist(), strict=True))
        if not crowd and groups["base"](by_id[cid])
    ]
    hits = sum(open_ended.normalize(predictions[i]) in novel for i in idx)
    return {"n": len(idx), "n_named_novel": hits, "rate": _pct(hits / len(idx)) if idx else None}


def open_ended_report(
    regions_path: Path,
    vocab_path: Path,
    gt: Json,
    gt_path: Path,
    gt_kind: str,
    num_base: int | None,
    vocab_annotations: Sequence[Path] | None = None,
    synonyms_path: Path | None = None,
    relationships_path: Path | None = None,
) -> Json:
    """The proxy open-ended evaluation of ``open_ended.json`` (module docstring)."""
    from pipeline import prompts

    regions = open_ended.load_regions(regions_path)
    open_ended.check_regions(regions, gt, str(regions_path), str(gt_path))
    vocab = prompts.load(vocab_path)
    names = list(vocab["names"])
    emb = vocab["embeddings"]
    if vocab_annotations:
        names = prompts.vocabulary(vocab_annotations)
        emb = prompts.select(vocab, names, source=str(vocab_path))
    emb = emb.float().numpy()
    if len(regions) and regions.embeddings.shape[1] != emb.shape[1]:
        raise EvaluationError(
            f"{regions_path}: embeddings have {regions.embeddings.shape[1]} dims but the vocabulary {vocab_path} "
            f"has {emb.shape[1]}"
        )
    predictions = open_ended.predict_names(regions.embeddings, emb, names)
    extra = open_ended.load_synonyms(synonyms_path) if synonyms_path else None
    synonyms = open_ended.synonym_table(gt["categories"], extra)
    relationships = open_ended.load_relationships(relationships_path) if relationships_path else None
    if relationships is not None:
        present = {c["name"] for c in gt["categories"] if c["id"] in set(regions.category_ids.tolist())}
        missing = sorted(present - set(relationships))
        if missing:
            raise EvaluationError(f"{relationships_path}: no entry for GT categories {missing[:10]}")
    if gt_kind == "lvis" and num_base is None:
        groups = {"base": lambda c: c["frequency"] != "r", "novel": lambda c: c["frequency"] == "r"}
    else:
        groups = {"base": lambda c: c["id"] < num_base, "novel": lambda c: c["id"] >= num_base}
    if gt_kind == "lvis":
        groups.update({f: (lambda c, f=f: c["frequency"] == f) for f in LVIS_FREQUENCIES})
    report = open_ended.region_report(regions, predictions, gt["categories"], groups, synonyms, relationships)
    report["base_named_novel"] = _base_named_novel(regions, predictions, gt["categories"], groups)
    if regions.object_embeddings is not None:  # the distilled object head's own classification of the same boxes
        object_predictions = open_ended.predict_names(regions.object_embeddings, emb, names)
        object_report = open_ended.region_report(regions, object_predictions, gt["categories"], groups, synonyms)
        report["object_head"] = {group: object_report[group] for group in ("all", *groups)}
        report["object_head"]["base_named_novel"] = _base_named_novel(
            regions, object_predictions, gt["categories"], groups
        )
    dataset_vocab = open_ended.dataset_vocabulary(synonyms)
    return {
        "protocol": "osm",
        "gt": gt_kind,
        "vocabulary": {
            "file": str(vocab_path),
            "size": len(names),
            "restricted_to": [str(p) for p in vocab_annotations] if vocab_annotations else None,
            "not_in_dataset": sum(open_ended.normalize(n) not in dataset_vocab for n in names),
        },
        "n_regions": len(regions),
        **report,
    }


# ------------------------------------------------------------------------------------------- outputs


def _write_csv(path: Path, rows: Sequence[Json]) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_log_argument(parser)
    parser.add_argument("--detections", type=Path, required=True, help="COCO-result detections JSON (input)")
    parser.add_argument("--out-dir", type=Path, required=True, help="output folder (metrics.json etc.)")
    parser.add_argument("--coco", type=Path, help="remapped COCO-format annotations (OV-COCO generalized)")
    parser.add_argument("--num-base", type=int, help="base categories = ids below this (needed with --coco)")
    parser.add_argument(
        "--max-dets",
        type=int,
        nargs=3,
        default=list(COCO_MAX_DETS),
        metavar=("M1", "M2", "M3"),
        help="COCOeval maxDets (AP@[.5:.95] is read at 100, AP50 at M3; default 100 300 1000)",
    )
    parser.add_argument("--lvis", type=Path, help="remapped LVIS-format annotations (OV-LVIS)")
    parser.add_argument("--lvis-max-dets", type=int, default=LVIS_MAX_DETS, help="detections per image (300)")
    parser.add_argument("--regions", type=Path, help="REGIONS.npz of the train stage (open-ended evaluation)")
    parser.add_argument("--vocab", type=Path, help="prompt file whose names are the open-ended vocabulary")
    parser.add_argument(
        "--vocab-annotations", type=Path, nargs="+", help="restrict the vocabulary to these files' category names"
    )
    parser.add_argument(
        "--regions-gt", choices=("coco", "lvis"), help="which annotation file the regions come from (default lvis)"
    )
    parser.add_argument("--synonyms", type=Path, help="extra synonyms JSON {name: [synonym, ...]}")
    parser.add_argument("--relationships", type=Path, help="LAC relationships JSON (adds LAC levels)")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.coco is None and args.lvis is None:
        raise EvaluationError("give --coco and/or --lvis")
    if args.coco is not None and args.num_base is None:
        raise EvaluationError("--coco needs --num-base (base categories = ids below it)")
    if any(m <= 0 for m in args.max_dets) or args.lvis_max_dets <= 0:
        raise EvaluationError(f"--max-dets {args.max_dets} / --lvis-max-dets {args.lvis_max_dets} must be positive")
    if 100 not in args.max_dets:
        log.warning("--max-dets %s has no 100: AP@[.5:.95] is undefined (pycocotools reads it at 100)", args.max_dets)
    oe_opts = {"vocab": args.vocab, "vocab-annotations": args.vocab_annotations, "regions-gt": args.regions_gt}
    oe_opts.update(synonyms=args.synonyms, relationships=args.relationships)
    if args.regions is None:
        given = [f"--{k}" for k, v in oe_opts.items() if v]
        if given:
            raise EvaluationError(f"{', '.join(given)} only make sense with --regions")
    elif args.vocab is None:
        raise EvaluationError("--regions needs --vocab (the prompt file naming the vocabulary)")
    if args.regions_gt is not None and getattr(args, args.regions_gt) is None:
        raise EvaluationError(f"--regions-gt {args.regions_gt} needs --{args.regions_gt}")


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log, args.verbose)
    _check_args(args)
    dets = load_detections(args.detections)
    inputs = {"detections": args.detections}
    gts: dict[str, Json] = {}
    for kind in ("coco", "lvis"):
        path = getattr(args, kind)
        if path is None:
            continue
        gts[kind] = load_gt(path, lvis=kind == "lvis")
        check_detections(dets, gts[kind], str(args.detections), str(path))
        if args.num_base is not None:
            check_remapped(gts[kind], str(path), args.num_base)
        inputs[kind] = path
    coco = lvis = oe = None
    if "coco" in gts:
        coco = coco_report(gts["coco"], dets, args.num_base, args.max_dets)
        s = coco["summary"]
        log.info("OV-COCO AP50 novel %s base %s all %s", s["novel"]["AP50"], s["base"]["AP50"], s["all"]["AP50"])
    if "lvis" in gts:
        lvis = lvis_report(gts["lvis"], dets, args.num_base, args.lvis_max_dets, str(args.detections), str(args.lvis))
        r = lvis["summary"]["bbox"]["results"]
        log.info("OV-LVIS box AP %s APr %s APc %s APf %s", r["AP"], r["APr"], r["APc"], r["APf"])
    if args.regions is not None:
        kind = args.regions_gt or ("lvis" if "lvis" in gts else "coco")
        oe = open_ended_report(
            args.regions,
            args.vocab,
            gts[kind],
            getattr(args, kind),
            kind,
            args.num_base,
            args.vocab_annotations,
            args.synonyms,
            args.relationships,
        )
        for extra in ("vocab", "synonyms", "relationships", "regions"):
            if getattr(args, extra) is not None:
                inputs[extra] = getattr(args, extra)
        log.info("open-ended accuracy %s, not in vocabulary %s", oe["all"]["accuracy"], oe["all"]["not_in_vocab_rate"])
    inputs = {k: {"path": str(v), "sha256": _sha256(v)} for k, v in inputs.items()}
    out = args.out_dir
    rows = (coco["per_class"] if coco else []) + (lvis["per_class"] if lvis else [])
    _write_csv(out / "per_class_ap.csv", rows)
    atomic.write_json(out / "per_class_ap.json", rows)
    recall = np.linspace(0.0, 1.0, 101).round(2).tolist()
    pr = {"recall": recall, **({"coco": coco["pr"]} if coco else {}), **({"lvis": lvis["pr"]} if lvis else {})}
    atomic.write_json(out / "pr_curves.json", pr)
    if oe is not None:
        atomic.write_json(out / "open_ended.json", oe, compact=False)
    atomic.write_json(out / "metrics.json", build_metrics(coco, lvis, oe, inputs), compact=False)
    log.info("metrics -> %s", out / "metrics.json")


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
