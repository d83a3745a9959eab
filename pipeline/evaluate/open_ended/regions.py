"""The region proxy predictor: ground-truth boxes named by the detector's embedding of each, and their report.

Proxy predictor (region classification by the detector, used by ``python -m pipeline.evaluate --regions``)
    :func:`load_regions` reads the train stage's ``REGIONS.npz`` (``ann_ids int64 [N]``, ``image_ids int64 [N]``,
    ``category_ids int64 [N]`` remapped GT ids, ``iscrowd uint8 [N]``, ``embeddings float32 [N, D]``, and
    optionally ``object_embeddings float32 [N, D]``, the object head's embedding of the same boxes) into
    :class:`Regions`; :func:`predict_names` takes the argmax cosine over a vocabulary of (name, embedding) rows;
    the predicted *string* is that name, so a vocabulary larger than the dataset's makes the task open-ended.
    :func:`check_regions` requires every non-crowd region to be an annotation of the ground-truth dict with the
    same image and category id. :func:`region_report` scores the predicted names with the OSM protocol
    (:mod:`pipeline.evaluate.open_ended.osm`) overall, per group of categories and per class, lists the top
    confusions, and adds the LAC levels (:mod:`pipeline.evaluate.open_ended.lac`) given a relationships table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluate.open_ended.lac import lac_accuracy
from pipeline.evaluate.open_ended.osm import OpenEndedError, accuracy, dataset_vocabulary, expand, normalize

REGION_ARRAYS = {
    "ann_ids": "i",
    "image_ids": "i",
    "category_ids": "i",
    "iscrowd": "iub",
    "embeddings": "f",
}


@dataclass(frozen=True)
class Regions:
    """Ground-truth regions with the detector's embedding of each (``REGIONS.npz``)."""

    ann_ids: np.ndarray
    image_ids: np.ndarray
    category_ids: np.ndarray
    iscrowd: np.ndarray
    embeddings: np.ndarray
    object_embeddings: np.ndarray | None = None  # the object head's, for detectors that have one

    def __len__(self) -> int:
        return len(self.ann_ids)


def load_regions(path: str | Path) -> Regions:
    """Read and check a regions file (``np.load(allow_pickle=False)``); errors name the file and the array."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError as exc:
        raise OpenEndedError(f"{path}: file not found") from exc
    except Exception as exc:  # noqa: BLE001 - zip / format / pickled-object errors all mean "unusable"
        raise OpenEndedError(f"{path}: not a readable npz of plain arrays ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in REGION_ARRAYS if k not in arrays]
    if missing:
        raise OpenEndedError(f"{path}: missing array(s) {missing} (need {list(REGION_ARRAYS)})")
    n = len(arrays["ann_ids"])
    for key, kinds in REGION_ARRAYS.items():
        arr = arrays[key]
        if arr.dtype.kind not in kinds:
            raise OpenEndedError(f"{path}: '{key}' has dtype {arr.dtype}, expected kind {kinds!r}")
        want_ndim = 2 if key == "embeddings" else 1
        if arr.ndim != want_ndim or len(arr) != n:
            raise OpenEndedError(f"{path}: '{key}' has shape {arr.shape}; expected {n} rows, {want_ndim}-D")
    emb = arrays["embeddings"].astype(np.float32)
    if not np.isfinite(emb).all():
        raise OpenEndedError(f"{path}: 'embeddings' holds non-finite values")
    obj = arrays.get("object_embeddings")
    if obj is not None:
        if obj.dtype.kind != "f" or obj.shape != emb.shape:
            raise OpenEndedError(
                f"{path}: 'object_embeddings' has shape {obj.shape} / dtype {obj.dtype}; expected float {emb.shape}"
            )
        obj = obj.astype(np.float32)
        if not np.isfinite(obj).all():
            raise OpenEndedError(f"{path}: 'object_embeddings' holds non-finite values")
    return Regions(
        ann_ids=arrays["ann_ids"].astype(np.int64),
        image_ids=arrays["image_ids"].astype(np.int64),
        category_ids=arrays["category_ids"].astype(np.int64),
        iscrowd=arrays["iscrowd"].astype(np.uint8),
        embeddings=emb,
        object_embeddings=obj,
    )


def check_regions(regions: Regions, annotations: Mapping[str, Any], regions_source: str, gt_source: str) -> None:
    """Every non-crowd region must be an annotation of the GT file with the same image and category id.

    Crowd regions are skipped by the protocol, so they may be absent (an LVIS-format file made from a COCO one
    has no crowd annotations, while the regions were taken from the COCO file)."""
    anns = {a["id"]: a for a in annotations["annotations"]}
    cat_ids = {c["id"] for c in annotations["categories"]}
    unknown = sorted(set(regions.category_ids.tolist()) - cat_ids)
    if unknown:
        raise OpenEndedError(f"{regions_source}: category ids {unknown[:10]} are not categories of {gt_source}")
    for ann_id, image_id, cat_id, crowd in zip(
        regions.ann_ids.tolist(),
        regions.image_ids.tolist(),
        regions.category_ids.tolist(),
        regions.iscrowd.tolist(),
        strict=True,
    ):
        ann = anns.get(ann_id)
        if ann is None:
            if crowd:
                continue
            raise OpenEndedError(f"{regions_source}: annotation id {ann_id} is not in {gt_source}")
        if ann["image_id"] != image_id or ann["category_id"] != cat_id:
            raise OpenEndedError(
                f"{regions_source}: annotation {ann_id} has image {image_id} / category {cat_id}, but {gt_source} "
                f"says image {ann['image_id']} / category {ann['category_id']}"
            )


def _unit_rows(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise OpenEndedError(f"{what}: row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros")
    return x / norms


def predict_names(embeddings: np.ndarray, vocab_embeddings: np.ndarray, names: Sequence[str]) -> list[str]:
    """The vocabulary name of highest cosine similarity for each region (ties: the first name)."""
    if len(names) != len(vocab_embeddings):
        raise OpenEndedError(f"predict_names: {len(names)} names for {len(vocab_embeddings)} vocabulary rows")
    if len(embeddings) == 0:
        return []
    if embeddings.shape[1] != vocab_embeddings.shape[1]:
        raise OpenEndedError(
            f"predict_names: region embeddings have {embeddings.shape[1]} dims, the vocabulary "
            f"{vocab_embeddings.shape[1]}"
        )
    sims = _unit_rows(embeddings, "region embeddings") @ _unit_rows(vocab_embeddings, "vocabulary").T
    return [names[i] for i in sims.argmax(1).tolist()]


def region_report(
    regions: Regions,
    predictions: Sequence[str],
    categories: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Callable[[Mapping[str, Any]], bool]],
    synonyms: Mapping[str, Sequence[str]],
    relationships: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    top_confusions: int = 20,
) -> dict[str, Any]:
    """OSM metrics of region predictions overall, per group of categories, per class (+ LAC levels).

    Args:
        groups: group name -> predicate on a category record (e.g. base / novel, LVIS r / c / f).
    """
    by_id = {c["id"]: c for c in categories}
    gt_names = [by_id[c]["name"] for c in regions.category_ids.tolist()]
    crowd = regions.iscrowd.tolist()
    vocab = dataset_vocabulary(synonyms)
    report: dict[str, Any] = {"all": accuracy(predictions, gt_names, synonyms, vocab, crowd)}
    for group, pred in groups.items():
        idx = [i for i, c in enumerate(regions.category_ids.tolist()) if pred(by_id[c])]
        report[group] = accuracy(
            [predictions[i] for i in idx], [gt_names[i] for i in idx], synonyms, vocab, [crowd[i] for i in idx]
        )
    per_class = {}
    for name in dict.fromkeys(gt_names):
        idx = [i for i, g in enumerate(gt_names) if g == name]
        r = accuracy([predictions[i] for i in idx], [name] * len(idx), synonyms, vocab, [crowd[i] for i in idx])
        per_class[name] = {"n": r["n"], "accuracy": r["accuracy"], "not_in_vocab_rate": r["not_in_vocab_rate"]}
    report["per_class"] = per_class
    augmented = {g: expand(synonyms[g]) for g in per_class}
    wrong = Counter(
        (g, p)
        for g, p, c in zip(gt_names, predictions, crowd, strict=True)
        if not c and normalize(p) not in augmented[g]
    )
    report["top_confusions"] = [{"gt": g, "pred": p, "count": k} for (g, p), k in wrong.most_common(top_confusions)]
    if relationships is not None:
        report["lac"] = lac_accuracy(predictions, gt_names, relationships, crowd)
    return report
