"""``open_ended.json``: the proxy open-ended evaluation of the ``evaluate`` stage (``--regions``).

:func:`open_ended_report` reads the regions file (:mod:`pipeline.evaluate.open_ended.regions`) and checks it
against the ground-truth dict it was taken from, names every region by the argmax cosine against a prompt file's
vocabulary (optionally restricted to the category names of other annotation files), and scores the names with
the OSM protocol (:mod:`pipeline.evaluate.open_ended.osm`; synonyms from the categories' LVIS ``synonyms`` field
and an optional synonyms file), adding the LAC levels (:mod:`pipeline.evaluate.open_ended.lac`) when a
relationships file is given. Category groups: base / novel (id < ``num_base``, or LVIS c + f / r without it),
plus r / c / f for LVIS. The result::

    {"protocol": "osm", "gt": "coco" | "lvis",
     "vocabulary": {"file", "size", "restricted_to": [path] | None, "not_in_dataset"},
     "n_regions",
     "all" | "base" | "novel" (| "r" | "c" | "f"): {"accuracy", "not_in_vocab_rate", "n", "n_correct",
                                                    "n_not_in_vocab", "n_crowd_skipped"},
     "base_named_novel": {"n", "n_named_novel", "rate"},
     "object_head": {group: {...}, "base_named_novel": {...}},   # regions with object_embeddings
     "per_class", "top_confusions", "lac"}                       # region_report's

Errors are ``EvaluationError`` (dimension mismatch, relationships missing a GT class) or ``OpenEndedError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.evaluate.detections import LVIS_FREQUENCIES, EvaluationError, Json
from pipeline.evaluate.metrics import _pct
from pipeline.evaluate.open_ended.lac import load_relationships
from pipeline.evaluate.open_ended.osm import dataset_vocabulary, load_synonyms, normalize, synonym_table
from pipeline.evaluate.open_ended.regions import check_regions, load_regions, predict_names, region_report
from pipeline.formats.annotation_file import vocabulary


def _base_named_novel(regions, predictions: Sequence[str], categories: Sequence[Json], groups) -> Json:
    """How many non-crowd base-class boxes get the exact name of a novel class: a classifier whose never-trained
    novel columns outscore the base ones (a "hub") shows here."""
    by_id = {c["id"]: c for c in categories}
    novel = {normalize(c["name"]) for c in categories if groups["novel"](c)}
    idx = [
        i
        for i, (cid, crowd) in enumerate(zip(regions.category_ids.tolist(), regions.iscrowd.tolist(), strict=True))
        if not crowd and groups["base"](by_id[cid])
    ]
    hits = sum(normalize(predictions[i]) in novel for i in idx)
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
    from pipeline.formats import prompt_file

    regions = load_regions(regions_path)
    check_regions(regions, gt, str(regions_path), str(gt_path))
    vocab = prompt_file.load(vocab_path)
    names = list(vocab["names"])
    emb = vocab["embeddings"]
    if vocab_annotations:
        names = vocabulary(vocab_annotations)
        emb = prompt_file.select(vocab, names, source=str(vocab_path))
    emb = emb.float().numpy()
    if len(regions) and regions.embeddings.shape[1] != emb.shape[1]:
        raise EvaluationError(
            f"{regions_path}: embeddings have {regions.embeddings.shape[1]} dims but the vocabulary {vocab_path} "
            f"has {emb.shape[1]}"
        )
    predictions = predict_names(regions.embeddings, emb, names)
    extra = load_synonyms(synonyms_path) if synonyms_path else None
    synonyms = synonym_table(gt["categories"], extra)
    relationships = load_relationships(relationships_path) if relationships_path else None
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
    report = region_report(regions, predictions, gt["categories"], groups, synonyms, relationships)
    report["base_named_novel"] = _base_named_novel(regions, predictions, gt["categories"], groups)
    if regions.object_embeddings is not None:  # the distilled object head's own classification of the same boxes
        object_predictions = predict_names(regions.object_embeddings, emb, names)
        object_report = region_report(regions, object_predictions, gt["categories"], groups, synonyms)
        report["object_head"] = {group: object_report[group] for group in ("all", *groups)}
        report["object_head"]["base_named_novel"] = _base_named_novel(
            regions, object_predictions, gt["categories"], groups
        )
    dataset_vocab = dataset_vocabulary(synonyms)
    return {
        "protocol": "osm",
        "gt": gt_kind,
        "vocabulary": {
            "file": str(vocab_path),
            "size": len(names),
            "restricted_to": [str(p) for p in vocab_annotations] if vocab_annotations else None,
            "not_in_dataset": sum(normalize(n) not in dataset_vocab for n in names),
        },
        "n_regions": len(regions),
        **report,
    }
