"""OV-COCO (generalized setting): box AP over all / base / novel categories with pycocotools.

:func:`run_coco_eval` runs ``COCOeval`` (bbox) over every category and image of a remapped annotation dict,
``maxDets`` :data:`COCO_MAX_DETS` by default; ``evaluate()`` and ``accumulate()`` run once. :func:`coco_stats`
then reproduces pycocotools' ``summarize()`` on the precision ``[T, R, K, A, M]`` / recall ``[T, K, A, M]``
arrays sliced along K: AP@[.5:.95] at the maxDets entry equal to 100, AP50 / AP75 / APs / APm / APl and
ARs / ARm / ARl at ``maxDets[2]``, AR at each maxDets; percent, ``None`` when undefined.

:func:`coco_report` (detections in COCO result format, base = id < ``num_base``) returns::

    {"summary": {"all" | "base" | "novel": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR@<m>" x3, "ARs",
                                            "ARm", "ARl"},
                 "aliases": {"COCO_{B}_{N}_bbox_mAP...", "COCO_{B}_bbox_mAP...", "COCO_{N}_bbox_mAP..."},
                 "num_base", "num_categories", "num_images", "num_detections", "max_dets", "iou_type"},
     "per_class": [row per category, columns PER_CLASS_COLUMNS, dataset "coco"],
     "pr": PR-curve block at maxDets[2] (pipeline.evaluate.metrics)}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.evaluate.detections import Json, _num_gt
from pipeline.evaluate.metrics import PR_IOU, _mean_valid, _pct, _pr_block, _quiet

COCO_MAX_DETS = (100, 300, 1000)


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
