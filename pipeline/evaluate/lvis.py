"""OV-LVIS: box (and mask) AP over all / base / novel and r / c / f categories with lvis-api.

:func:`run_lvis_eval` runs ``LVISEval`` (``evaluate``, ``accumulate``, ``summarize``) over every image and
category of a remapped LVIS annotation dict, :data:`LVIS_MAX_DETS` detections per image; :func:`lvis_stats`
slices K of its ``precision [T, R, K, A]`` for the AP / AP50 / AP75 / APs / APm / APl of a set of categories.

:func:`lvis_report` evaluates bbox, and segm too when every detection carries a ``segmentation`` (then every GT
annotation needs one). Base = id < ``num_base`` when given, otherwise the c + f categories (novel = r).
It returns::

    {"summary": {"bbox" | "segm": {"results": lvis-api results in percent (AP, AP50, ..., APr, APc, APf, AR@300,
                                               ...),
                                   "all" | "base" | "novel": {"AP", "AP50", "AP75", "APs", "APm", "APl"}},
                 "split": "num_base" | "frequency", "num_base", "num_categories", "num_images",
                 "num_detections", "max_dets"},
     "per_class": [row per category and IoU type, columns PER_CLASS_COLUMNS, dataset "lvis"],
     "pr": bbox PR-curve block, "mean" also over "r", "c", "f" (pipeline.evaluate.metrics)}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from pipeline.evaluate.detections import LVIS_FREQUENCIES, EvaluationError, Json, _num_gt
from pipeline.evaluate.metrics import PR_IOU, _mean_valid, _pct, _pr_block, _quiet

LVIS_MAX_DETS = 300


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

    from pipeline.core.compat import patch_lvis_numpy

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
