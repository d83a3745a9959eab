"""pipeline.evaluate: OV-COCO slicing against pycocotools, hand-computed AP, OV-LVIS through lvis-api, the CLI."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import evaluate
from pipeline.core import cli
from tests.conftest import write_json
from tests.eval_helpers import (
    CATEGORIES,
    NUM_BASE,
    coco_gt,
    lvis_gt,
    noisy_detections,
    perfect_detections,
    with_masks,
)

STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR@100", "AR@300", "AR@1000", "ARs", "ARm", "ARl")
CONTRACT = ("novel_ap50", "base_ap50", "all_ap50", "novel_ap", "base_ap", "all_ap")
LVIS_CONTRACT = ("ap", "apr", "apc", "apf")


def pycocotools_stats(gt_path: Path, dets: list[dict], cat_ids, max_dets=(100, 300, 1000)) -> dict:
    """An independent pycocotools run restricted with params.catIds, summarize() stats in percent."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        E = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), "bbox")
        E.params.catIds = sorted(cat_ids)
        E.params.imgIds = sorted(gt.getImgIds())
        E.params.maxDets = list(max_dets)
        E.evaluate()
        E.accumulate()
        E.summarize()
    return {k: (None if v == -1 else 100 * v) for k, v in zip(STAT_KEYS, E.stats, strict=True)}


def assert_stats_equal(ours: dict, ref: dict, tol: float = 1e-6) -> None:
    for key in STAT_KEYS:
        if ref[key] is None:
            assert ours[key] is None, key
        else:
            assert ours[key] == pytest.approx(ref[key], abs=tol), key


# ------------------------------------------------------------------------------------------- OV-COCO


def test_slicing_equals_cocoeval_restricted_to_base_and_novel(tmp_path):
    gt = coco_gt(num_images=16, seed=3)
    gt_path = write_json(tmp_path / "gt.json", gt)
    dets = noisy_detections(gt, seed=4)
    report = evaluate.coco_report(gt, dets, NUM_BASE)
    s = report["summary"]
    all_ids = [c["id"] for c in CATEGORIES]
    groups = {"all": all_ids, "base": all_ids[:NUM_BASE], "novel": all_ids[NUM_BASE:]}
    for group, ids in groups.items():
        assert_stats_equal(s[group], pycocotools_stats(gt_path, dets, ids))
    # a non-trivial case: the three groups differ and lie strictly between 0 and 100
    assert len({round(s[g]["AP50"], 6) for g in groups}) == 3
    assert all(0 < s[g]["AP"] < 100 for g in groups)
    # per-class AP averages to the group AP; the PR mean curve averages to the group AP50
    for group in ("base", "novel"):
        aps = [r["ap"] for r in report["per_class"] if r["split"] == group and r["ap"] is not None]
        assert np.mean(aps) == pytest.approx(s[group]["AP"], abs=1e-9)
        assert 100 * np.mean(report["pr"]["mean"][group]) == pytest.approx(s[group]["AP50"], abs=1e-9)
    assert s["aliases"][f"COCO_{NUM_BASE}_bbox_mAP_50"] == s["base"]["AP50"]
    assert s["aliases"]["COCO_2_bbox_mAP_50"] == s["novel"]["AP50"]


def test_perfect_detections_give_100_and_none_give_0():
    gt = coco_gt()
    perfect = evaluate.coco_report(gt, perfect_detections(gt), NUM_BASE)["summary"]
    none = evaluate.coco_report(gt, [], NUM_BASE)["summary"]
    for group in ("all", "base", "novel"):
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR@100"):
            assert perfect[group][key] == pytest.approx(100.0), (group, key)
            assert none[group][key] == 0.0, (group, key)


def _one_image_gt(annotations: list[tuple[int, list[float]]]) -> dict:
    anns = [
        {"id": i + 1, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
        for i, (c, b) in enumerate(annotations)
    ]
    images = [{"id": 1, "width": 640, "height": 480}, {"id": 2, "width": 640, "height": 480}]
    return {"images": images, "annotations": anns, "categories": copy.deepcopy(CATEGORIES)}


def test_hand_computed_ap50_of_a_tp_fp_tp_ranking():
    """Base class 0: two GT boxes A, B; detections by score: A (TP), a box off everything (FP), B (TP).

    precision / recall after each detection: 1/1 @ 0.5, 1/2 @ 0.5, 2/3 @ 1.0. Interpolated (max to the right):
    1 for recall <= 0.5, 2/3 above. Of COCO's 101 recall thresholds 0.00..0.50 (51) read 1 and 0.51..1.00 (50)
    read 2/3: AP50 = (51 + 50 * 2/3) / 101 = 0.8349835 -> 83.49835 %. The TP boxes are exact (IoU 1), so every
    IoU threshold gives the same value and AP@[.5:.95] = AP50. Novel class 4: one GT found exactly: 100.
    Classes without GT are ignored, so all = (83.49835 + 100) / 2.
    """
    A, B = [10.0, 10.0, 100.0, 100.0], [300.0, 200.0, 50.0, 50.0]
    C = [400.0, 50.0, 60.0, 40.0]
    gt = _one_image_gt([(0, A), (0, B), (4, C)])
    dets = [
        {"image_id": 1, "category_id": 0, "bbox": A, "score": 0.9},
        {"image_id": 1, "category_id": 0, "bbox": [200.0, 350.0, 40.0, 40.0], "score": 0.8},
        {"image_id": 1, "category_id": 0, "bbox": B, "score": 0.7},
        {"image_id": 1, "category_id": 4, "bbox": C, "score": 0.95},
    ]
    s = evaluate.coco_report(gt, dets, NUM_BASE)["summary"]
    base = 100 * (51 + 50 * 2 / 3) / 101
    assert base == pytest.approx(83.49835, abs=1e-5)
    assert s["base"]["AP50"] == pytest.approx(base, abs=1e-9)
    assert s["base"]["AP"] == pytest.approx(base, abs=1e-9)
    assert s["novel"]["AP50"] == pytest.approx(100.0)
    assert s["all"]["AP50"] == pytest.approx((base + 100) / 2, abs=1e-9)


def test_ap_is_read_at_100_detections_and_ap50_at_max_dets_2():
    """One GT; 150 higher-scoring false positives, then the exact box. In the top 100 there is no TP: AP@[.5:.95]
    (read at maxDets 100) is 0. At maxDets[2] = 1000 the TP is the 151st: precision 1/151 at recall 1, which
    interpolates to 1/151 at all 101 thresholds, so AP50 = 100/151 %; AR@100 = 0, AR@300 = 100."""
    gt = _one_image_gt([(0, [0.0, 0.0, 20.0, 20.0])])
    dets = [
        {"image_id": 1, "category_id": 0, "bbox": [300.0 + 30 * (i % 10), 200.0 + 15 * (i // 10), 10.0, 10.0]}
        | {"score": 0.9 - 0.001 * i}
        for i in range(150)
    ]
    dets.append({"image_id": 1, "category_id": 0, "bbox": [0.0, 0.0, 20.0, 20.0], "score": 0.5})
    s = evaluate.coco_report(gt, dets, NUM_BASE)["summary"]["base"]
    assert s["AP"] == 0.0
    assert s["AP50"] == pytest.approx(100 / 151, abs=1e-9)
    assert s["AR@100"] == 0.0 and s["AR@300"] == pytest.approx(100.0)
    assert evaluate.coco_report(gt, dets, NUM_BASE)["summary"]["novel"]["AP50"] is None  # no novel GT: undefined


# ------------------------------------------------------------------------------------------- OV-LVIS


def test_lvis_apr_from_rare_classes_only():
    """Perfect on the rare classes (ids 4, 5), nothing on c / f: APr 100, APc = APf = 0, AP = share of r among
    the classes with GT; novel (frequency split) = APr."""
    gt = lvis_gt()
    with_gt = {a["category_id"] for a in gt["annotations"]}
    assert with_gt == {c["id"] for c in gt["categories"]}  # every class has GT here
    rare = [c["id"] for c in gt["categories"] if c["frequency"] == "r"]
    report = evaluate.lvis_report(gt, perfect_detections(gt, rare))
    res = report["summary"]["bbox"]["results"]
    assert res["APr"] == pytest.approx(100.0)
    assert res["APc"] == 0.0 and res["APf"] == 0.0
    assert res["AP"] == pytest.approx(100.0 * len(rare) / len(with_gt))
    assert report["summary"]["bbox"]["novel"]["AP"] == pytest.approx(100.0)
    assert report["summary"]["bbox"]["base"]["AP"] == 0.0
    rows = {r["category_id"]: r for r in report["per_class"]}
    assert all(rows[c]["ap"] == pytest.approx(100.0) for c in rare)
    assert report["pr"]["mean"]["r"] == pytest.approx([1.0] * 101)
    assert report["pr"]["mean"]["c"] == [0.0] * 101


def test_lvis_slices_equal_lvis_api(tmp_path):
    from lvis import LVIS, LVISEval, LVISResults

    from pipeline.core.compat import patch_lvis_numpy

    gt = lvis_gt(num_images=16, seed=5)
    gt_path = write_json(tmp_path / "lvis.json", gt)
    dets = noisy_detections(gt, seed=6)
    report = evaluate.lvis_report(gt, dets, num_base=NUM_BASE)
    s = report["summary"]["bbox"]
    assert s["novel"]["AP"] == pytest.approx(s["results"]["APr"], abs=1e-9)  # ids 4, 5 are the r classes
    patch_lvis_numpy()
    for group, ids in (("base", range(NUM_BASE)), ("novel", range(NUM_BASE, len(CATEGORIES)))):
        lvis = LVIS(str(gt_path))
        E = LVISEval(lvis, LVISResults(lvis, copy.deepcopy(dets)), "bbox")
        E.params.cat_ids = list(ids)
        with contextlib.redirect_stdout(io.StringIO()):
            E.run()
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            ref = E.results[key]
            assert s[group][key] == (None if ref == -1 else pytest.approx(100 * ref, abs=1e-6)), (group, key)
    assert 0 < s["results"]["AP"] < 100


def test_lvis_masks_and_empty_detections():
    gt = lvis_gt()
    report = evaluate.lvis_report(gt, with_masks(gt, perfect_detections(gt)))
    assert report["summary"]["segm"]["results"]["AP"] == pytest.approx(100.0)
    assert report["summary"]["bbox"]["results"]["APr"] == pytest.approx(100.0)
    assert {r["iou_type"] for r in report["per_class"]} == {"bbox", "segm"}
    mixed = with_masks(gt, perfect_detections(gt))
    del mixed[3]["segmentation"]
    with pytest.raises(ValueError, match=r"d\.json: detection #3 has no 'segmentation'"):
        evaluate.lvis_report(gt, mixed, det_source="d.json")
    empty = evaluate.lvis_report(gt, [])
    assert empty["summary"]["bbox"]["results"]["AP"] == 0.0
    assert "segm" not in empty["summary"]


# ------------------------------------------------------------------------------------------- CLI


def _files(tmp_path: Path, dets: list[dict]) -> tuple[Path, Path, Path]:
    coco = write_json(tmp_path / "val.all.json", coco_gt())
    lvis = write_json(tmp_path / "lvis_val.all.json", lvis_gt())
    return write_json(tmp_path / "dets.json", dets), coco, lvis


def test_cli_end_to_end_writes_contract_files(tmp_path):
    gt = coco_gt()
    dets = noisy_detections(gt, seed=2)
    det_path, coco, lvis = _files(tmp_path, dets)
    out = tmp_path / "eval"
    args = ["--detections", str(det_path), "--out-dir", str(out), "--coco", str(coco), "--lvis", str(lvis)]
    assert cli.run_main(evaluate.main, [*args, "--num-base", str(NUM_BASE)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in CONTRACT + LVIS_CONTRACT:
        assert isinstance(metrics[key], float), key
    ref = evaluate.coco_report(gt, dets, NUM_BASE)["summary"]
    assert metrics["novel_ap50"] == pytest.approx(ref["novel"]["AP50"])
    assert metrics["ov_source"] == "coco"
    assert metrics["inputs"]["detections"]["path"] == str(det_path)
    rows = list(csv.DictReader((out / "per_class_ap.csv").open()))
    assert len(rows) == 2 * len(CATEGORIES)  # COCO bbox + LVIS bbox
    assert rows[0].keys() == set(evaluate.PER_CLASS_COLUMNS)
    assert [r["split"] for r in rows[: len(CATEGORIES)]] == ["base"] * NUM_BASE + ["novel"] * 2
    assert json.loads((out / "per_class_ap.json").read_text())[0]["name"] == CATEGORIES[0]["name"]
    pr = json.loads((out / "pr_curves.json").read_text())
    assert len(pr["recall"]) == 101 and pr["recall"][-1] == 1.0
    assert len(pr["coco"]["mean"]["novel"]) == 101 and pr["coco"]["max_dets"] == 1000
    assert 100 * np.mean(pr["coco"]["mean"]["novel"]) == pytest.approx(metrics["novel_ap50"])
    assert set(pr["lvis"]["mean"]) == {"all", "base", "novel", "r", "c", "f"}
    assert not (out / "open_ended.json").exists()
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporaries


def test_cli_lvis_only_fills_ov_keys_and_empty_detections(tmp_path):
    det_path, _, lvis = _files(tmp_path, [])
    out = tmp_path / "eval"
    evaluate.main(["--detections", str(det_path), "--out-dir", str(out), "--lvis", str(lvis)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ov_source"] == "lvis" and metrics["lvis"]["split"] == "frequency"
    assert all(metrics[k] == 0.0 for k in CONTRACT + LVIS_CONTRACT)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"image_id": 4, "category_id": 99, "bbox": [0, 0, 5, 5], "score": 0.5},
            r"dets\.json: detection #1 .*category_id 99",
        ),
        (
            {"image_id": 12345, "category_id": 0, "bbox": [0, 0, 5, 5], "score": 0.5},
            r"dets\.json: detection #1 .*image_id 12345",
        ),
        ({"image_id": 4, "category_id": 0, "bbox": [0, 0, 5], "score": 0.5}, r"dets\.json: detection #1 has a bbox"),
        ({"image_id": 4, "category_id": 0, "bbox": [0, 0, 5, 5]}, r"dets\.json: detection #1 has no 'score'"),
    ],
)
def test_bad_detections_name_the_file_and_the_id(tmp_path, bad, message):
    good = {"image_id": 4, "category_id": 0, "bbox": [0, 0, 5, 5], "score": 0.5}
    det_path, coco, _ = _files(tmp_path, [good, bad])
    out = tmp_path / "eval"
    argv = ["--detections", str(det_path), "--out-dir", str(out), "--coco", str(coco), "--num-base", "4"]
    with pytest.raises(ValueError, match=message):
        evaluate.main(argv)
    assert cli.run_main(evaluate.main, argv) == 2
    assert not out.exists()


def test_argument_and_annotation_errors(tmp_path):
    det_path, coco, _ = _files(tmp_path, [])
    base = ["--detections", str(det_path), "--out-dir", str(tmp_path / "o")]
    with pytest.raises(ValueError, match="--coco needs --num-base"):
        evaluate.main([*base, "--coco", str(coco)])
    with pytest.raises(ValueError, match="--coco and/or --lvis"):
        evaluate.main(base)
    with pytest.raises(ValueError, match="--regions needs --vocab"):
        evaluate.main([*base, "--coco", str(coco), "--num-base", "4", "--regions", "r.npz"])
    one_based = coco_gt()
    for c in one_based["categories"]:
        c["id"] += 1
    for a in one_based["annotations"]:
        a["category_id"] += 1
    raw = write_json(tmp_path / "raw.json", one_based)
    with pytest.raises(ValueError, match=r"raw\.json: category ids are not 0\.\.5"):
        evaluate.main([*base, "--coco", str(raw), "--num-base", "4"])


def test_help_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.evaluate", "--help"], capture_output=True, text=True, check=True
    )
    assert "--detections" in proc.stdout and "metrics.json" in proc.stdout


def test_dry_run_evaluates_the_dry_run_images_and_says_so(tmp_path):
    """A dry run's train predict sees the first images of the file only: perfect detections on those score 100
    under --dry-run (the other images are not evaluated), and metrics.json and the log say it is a dry run."""
    from pipeline.core import dry_run as dry

    gt = coco_gt()  # 14 images
    first = {im["id"] for im in gt["images"][: dry.IMAGES]}
    dets = [d for d in perfect_detections(gt) if d["image_id"] in first]
    det_path, coco, lvis = _files(tmp_path, dets)
    lvis_data = json.loads(lvis.read_text())
    lvis_data["images"].reverse()  # another order: the set of the first file (--coco) is evaluated in both
    lvis.write_text(json.dumps(lvis_data))
    args = ["--detections", str(det_path), "--coco", str(coco), "--num-base", str(NUM_BASE)]
    dry_args = [*args, "--lvis", str(lvis), "--out-dir", str(tmp_path / "dry"), "--dry-run"]
    evaluate.main([*dry_args, "--log", str(tmp_path / "dry.log")])
    dry_metrics = json.loads((tmp_path / "dry/metrics.json").read_text())
    assert dry_metrics["dry_run"] is True and dry_metrics["all_ap50"] == pytest.approx(100.0)
    assert dry_metrics["coco"]["num_images"] == dry_metrics["lvis"]["num_images"] == dry.IMAGES
    assert "WARNING" in (log := (tmp_path / "dry.log").read_text()) and "DRY RUN" in log and "not results" in log
    evaluate.main([*args, "--out-dir", str(tmp_path / "full"), "--log", str(tmp_path / "full.log")])
    metrics = json.loads((tmp_path / "full/metrics.json").read_text())
    assert metrics["dry_run"] is False and metrics["all_ap50"] < 90.0  # 6 images without detections
    assert "DRY RUN" not in (tmp_path / "full.log").read_text()
