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
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.core import atomic, cli
from pipeline.core.hashing import sha256_file
from pipeline.evaluate.coco import COCO_MAX_DETS, coco_dt, coco_gt, coco_report, coco_stats, run_coco_eval
from pipeline.evaluate.detections import (
    LVIS_FREQUENCIES,
    EvaluationError,
    Json,
    check_detections,
    check_remapped,
    load_detections,
    load_gt,
)
from pipeline.evaluate.lvis import LVIS_MAX_DETS, lvis_dt, lvis_gt, lvis_report, lvis_stats, run_lvis_eval
from pipeline.evaluate.metrics import PER_CLASS_COLUMNS, PR_IOU, _write_csv, build_metrics
from pipeline.evaluate.open_ended import open_ended_report

__all__ = [
    "COCO_MAX_DETS",
    "LVIS_FREQUENCIES",
    "LVIS_MAX_DETS",
    "PER_CLASS_COLUMNS",
    "PR_IOU",
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
    "run_coco_eval",
    "run_lvis_eval",
]

log = logging.getLogger(__name__)


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
    inputs = {k: {"path": str(v), "sha256": sha256_file(v)} for k, v in inputs.items()}
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
