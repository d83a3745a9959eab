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

Dry run (``--dry-run``)
    Only the dry-run image set is evaluated, in every file: that of ``--coco`` when given, else of ``--lvis``
    (its first images, those a dry run's train predict read: :mod:`pipeline.core.dry_run`); ``metrics.json`` says
    ``"dry_run": true`` (else false) and the log warns that the numbers are not results.

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
         "inputs": {name: {"path", "sha256"}},
         "dry_run": true | false}                                                  # --dry-run: not a result

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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.core import atomic
from pipeline.core import dry_run as dry
from pipeline.core.hashing import sha256_file
from pipeline.core.options import Command, option
from pipeline.evaluate.coco import COCO_MAX_DETS, coco_dt, coco_gt, coco_report, coco_stats, run_coco_eval
from pipeline.evaluate.detections import (
    LVIS_FREQUENCIES,
    EvaluationError,
    Json,
    check_detections,
    check_remapped,
    load_gt,
)
from pipeline.evaluate.lvis import LVIS_MAX_DETS, lvis_dt, lvis_gt, lvis_report, lvis_stats, run_lvis_eval
from pipeline.evaluate.metrics import PER_CLASS_COLUMNS, PR_IOU, build_metrics, write_per_class_csv
from pipeline.evaluate.open_ended import open_ended_report
from pipeline.formats.detections import load as load_detections

__all__ = [
    "COCO_MAX_DETS",
    "LVIS_FREQUENCIES",
    "LVIS_MAX_DETS",
    "PER_CLASS_COLUMNS",
    "PR_IOU",
    "EvaluateOptions",
    "EvaluationError",
    "Json",
    "build_metrics",
    "build_parser",
    "check_detections",
    "check_remapped",
    "coco_dt",
    "coco_gt",
    "coco_report",
    "coco_stats",
    "load_detections",
    "load_gt",
    "lvis_dt",
    "lvis_gt",
    "lvis_report",
    "lvis_stats",
    "main",
    "open_ended_report",
    "run",
    "run_coco_eval",
    "run_lvis_eval",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """The options of ``python -m pipeline.evaluate``; an inconsistent combination raises ``EvaluationError``."""

    detections: Path = option(help="COCO-result detections JSON (input)")
    out_dir: Path = option(help="output folder (metrics.json etc.)")
    coco: Path | None = option(None, help="remapped COCO-format annotations (OV-COCO generalized)")
    num_base: int | None = option(None, help="base categories = ids below this (needed with --coco)")
    max_dets: tuple[int, ...] = option(
        COCO_MAX_DETS,
        help="COCOeval maxDets (AP@[.5:.95] is read at 100, AP50 at M3)",
        nargs=3,
        metavar=("M1", "M2", "M3"),
    )
    lvis: Path | None = option(None, help="remapped LVIS-format annotations (OV-LVIS)")
    lvis_max_dets: int = option(LVIS_MAX_DETS, help="detections per image")
    regions: Path | None = option(None, help="REGIONS.npz of the train stage (open-ended evaluation)")
    vocab: Path | None = option(None, help="prompt file whose names are the open-ended vocabulary")
    vocab_annotations: tuple[Path, ...] | None = option(
        None, help="restrict the vocabulary to these files' category names", nargs="+"
    )
    regions_gt: Literal["coco", "lvis"] | None = option(
        None, help="which annotation file the regions come from (none: lvis when --lvis is given, else coco)"
    )
    synonyms: Path | None = option(None, help="extra synonyms JSON {name: [synonym, ...]}")
    relationships: Path | None = option(None, help="LAC relationships JSON (adds LAC levels)")
    dry_run: bool = option(
        False,
        help=f"the detections come from a dry run: evaluate the first {dry.IMAGES} images of the first file only; "
        "metrics.json says dry_run (not results)",
        action="store_true",
    )

    def __post_init__(self) -> None:
        if self.coco is None and self.lvis is None:
            raise EvaluationError("give --coco and/or --lvis")
        if self.coco is not None and self.num_base is None:
            raise EvaluationError("--coco needs --num-base (base categories = ids below it)")
        if any(m <= 0 for m in self.max_dets) or self.lvis_max_dets <= 0:
            raise EvaluationError(
                f"--max-dets {list(self.max_dets)} / --lvis-max-dets {self.lvis_max_dets} must be positive"
            )
        oe_opts = {"vocab": self.vocab, "vocab-annotations": self.vocab_annotations, "regions-gt": self.regions_gt}
        oe_opts.update(synonyms=self.synonyms, relationships=self.relationships)
        if self.regions is None:
            given = [f"--{k}" for k, v in oe_opts.items() if v]
            if given:
                raise EvaluationError(f"{', '.join(given)} only make sense with --regions")
        elif self.vocab is None:
            raise EvaluationError("--regions needs --vocab (the prompt file naming the vocabulary)")
        if self.regions_gt is not None and getattr(self, self.regions_gt) is None:
            raise EvaluationError(f"--regions-gt {self.regions_gt} needs --{self.regions_gt}")


def run(options: EvaluateOptions) -> None:
    """Evaluate ``options.detections`` and write ``metrics.json`` etc. into ``options.out_dir`` (module docstring)."""
    if 100 not in options.max_dets:
        log.warning(
            "--max-dets %s has no 100: AP@[.5:.95] is undefined (pycocotools reads it at 100)", list(options.max_dets)
        )
    dets = load_detections(options.detections)
    inputs = {"detections": options.detections}
    gts: dict[str, Json] = {}
    keep: list[int] | None = None  # dry run: the dry-run image set of the first file, evaluated in every file
    for kind in ("coco", "lvis"):
        path = getattr(options, kind)
        if path is None:
            continue
        gts[kind] = load_gt(path, lvis=kind == "lvis")
        if options.dry_run:  # the images a dry run's train predict read
            keep = dry.record_ids(gts[kind]["images"]) if keep is None else keep
            gts[kind] = dry.restrict(gts[kind], keep)
        check_detections(dets, gts[kind], str(options.detections), str(path))
        if options.num_base is not None:
            check_remapped(gts[kind], str(path), options.num_base)
        inputs[kind] = path
    coco = lvis = oe = None
    if "coco" in gts:
        coco = coco_report(gts["coco"], dets, options.num_base, options.max_dets)
        s = coco["summary"]
        log.info("OV-COCO AP50 novel %s base %s all %s", s["novel"]["AP50"], s["base"]["AP50"], s["all"]["AP50"])
    if "lvis" in gts:
        lvis = lvis_report(
            gts["lvis"], dets, options.num_base, options.lvis_max_dets, str(options.detections), str(options.lvis)
        )
        r = lvis["summary"]["bbox"]["results"]
        log.info("OV-LVIS box AP %s APr %s APc %s APf %s", r["AP"], r["APr"], r["APc"], r["APf"])
    if options.regions is not None:
        kind = options.regions_gt or ("lvis" if "lvis" in gts else "coco")
        oe = open_ended_report(
            options.regions,
            options.vocab,
            gts[kind],
            getattr(options, kind),
            kind,
            options.num_base,
            options.vocab_annotations,
            options.synonyms,
            options.relationships,
        )
        for extra in ("vocab", "synonyms", "relationships", "regions"):
            if getattr(options, extra) is not None:
                inputs[extra] = getattr(options, extra)
        log.info("open-ended accuracy %s, not in vocabulary %s", oe["all"]["accuracy"], oe["all"]["not_in_vocab_rate"])
    inputs = {k: {"path": str(v), "sha256": sha256_file(v)} for k, v in inputs.items()}
    out = options.out_dir
    rows = (coco["per_class"] if coco else []) + (lvis["per_class"] if lvis else [])
    write_per_class_csv(out / "per_class_ap.csv", rows)
    atomic.write_json(out / "per_class_ap.json", rows)
    recall = np.linspace(0.0, 1.0, 101).round(2).tolist()
    pr = {"recall": recall, **({"coco": coco["pr"]} if coco else {}), **({"lvis": lvis["pr"]} if lvis else {})}
    atomic.write_json(out / "pr_curves.json", pr)
    if oe is not None:
        atomic.write_json(out / "open_ended.json", oe, compact=False)
    metrics = {**build_metrics(coco, lvis, oe, inputs), "dry_run": options.dry_run}
    atomic.write_json(out / "metrics.json", metrics, compact=False)
    log.info("metrics -> %s", out / "metrics.json")
    if options.dry_run:
        log.warning("%s: %s", out / "metrics.json", dry.WARNING)


COMMAND = Command("python -m pipeline.evaluate", __doc__, EvaluateOptions, run)
build_parser, main = COMMAND.build_parser, COMMAND.main
