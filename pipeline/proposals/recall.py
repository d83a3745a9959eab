"""Proposal quality: average recall of base and novel ground truth at 100 / 300 / 1000 proposals.

For each ground-truth box the best IoU among an image's top-k proposals (by score) is taken; recall at IoU t is
the fraction of boxes whose best IoU >= t, and AR is the mean recall over t = 0.50, 0.55, ..., 0.95 (Hosang et
al.; every proposal may cover several boxes). Crowd boxes are not counted. Values in percent; ``None`` (JSON null)
for a group without boxes, where recall is undefined.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)
DEFAULT_KS = (100, 300, 1000)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes ``a [N, 4]`` and ``b [M, 4]`` -> ``[N, M]``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def best_overlaps(gt: np.ndarray, proposals: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """``[G]`` best IoU of each ground-truth box with the ``k`` highest-scoring proposals (0 if none)."""
    if len(gt) == 0:
        return np.zeros(0)
    if len(proposals) == 0:
        return np.zeros(len(gt))
    top = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return box_iou(gt, np.asarray(proposals)[top]).max(1)


def average_recall(best: np.ndarray) -> float | None:
    """Mean over IoU 0.50:0.95 of the fraction of boxes with best IoU >= t, in percent (``None`` without boxes)."""
    if len(best) == 0:
        return None
    return float(100 * np.mean([(best >= t).mean() for t in IOU_THRESHOLDS]))


def recall_report(annotations: Mapping, proposals, num_base: int, ks: Sequence[int] = DEFAULT_KS) -> dict:
    """AR@k and recall@k at IoU 0.5 for base (remapped id < ``num_base``), novel and all ground truth.

    Args:
        annotations: a remapped annotation dict with every class (``.65`` / ``.1203`` / ``.all``).
        proposals: anything with ``get(image_id) -> (boxes [n, 4], scores [n])``
            (:class:`pipeline.formats.proposal_file.ProposalFile`).
    """
    gt: dict[int, list] = {}
    for a in annotations["annotations"]:
        if a.get("iscrowd"):
            continue
        x, y, w, h = a["bbox"]
        gt.setdefault(a["image_id"], []).append((x, y, x + w, y + h, a["category_id"] < num_base))
    best = {k: {"base": [], "novel": []} for k in ks}
    for image_id, boxes in gt.items():
        props, scores = proposals.get(image_id)
        arr = np.asarray([b[:4] for b in boxes], dtype=np.float64)
        is_base = np.asarray([b[4] for b in boxes])
        for k in ks:
            overlaps = best_overlaps(arr, props, scores, k)
            best[k]["base"].append(overlaps[is_base])
            best[k]["novel"].append(overlaps[~is_base])
    report: dict = {"iou_thresholds": IOU_THRESHOLDS.tolist()}
    for group in ("base", "novel", "all"):
        entry = {}
        for k in ks:
            parts = best[k]["base"] + best[k]["novel"] if group == "all" else best[k][group]
            ov = np.concatenate(parts) if parts else np.zeros(0)
            ar = average_recall(ov)
            entry[f"AR@{k}"] = None if ar is None else round(ar, 3)
            entry[f"R@{k}@0.5"] = round(float(100 * (ov >= 0.5).mean()), 3) if len(ov) else None
            entry["boxes"] = int(len(ov))
        report[group] = entry
    return report
