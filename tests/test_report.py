"""The report renders from stored files only: metrics, curves, per-class AP, training scalars, benchmarks."""

from __future__ import annotations

import json

import pytest

from pipeline import report


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _stored_run(root):
    recall = [i / 100 for i in range(101)]
    for e, (novel, base) in {"vild_demo": (12.5, 40.0), "oadp_demo": (21.25, 41.5)}.items():
        metrics = {
            "novel_ap50": novel,
            "base_ap50": base,
            "all_ap50": 33.0,
            "novel_ap": 5.0,
            "base_ap": 20.0,
            "all_ap": 16.0,
            "ap": 15.0,
            "apr": 4.0,
            "apc": None if e == "vild_demo" else 7.0,
            "apf": 19.0,
            "open_ended": {"accuracy": 61.0, "not_in_vocab_rate": 0.0},
        }
        _write(root / "evaluate" / e / "metrics.json", metrics)
        curve = [max(0.0, 1 - r) for r in recall]
        _write(
            root / "evaluate" / e / "pr_curves.json",
            {"recall": recall, "coco": {"mean": {"all": curve, "base": curve, "novel": [c / 2 for c in curve]}}},
        )
        rows = [
            {"dataset": "coco", "iou_type": "bbox", "category_id": i, "name": f"c{i}", "split": s, "ap50": a}
            for i, (s, a) in enumerate([("base", 50.0), ("base", None), ("novel", 10.0)])
        ]
        _write(root / "evaluate" / e / "per_class_ap.json", rows)
        scalars = root / "train" / e / "20260101_000000" / "vis_data" / "scalars.json"
        scalars.parent.mkdir(parents=True)
        scalars.write_text(
            "\n".join(json.dumps({"iter": i, "loss": 3.0 - i / 10, "loss_cls": 1.0}) for i in range(1, 11))
        )
    _write(root / "recall.json", {"base": {"AR@100": 18.0, "R@100@0.5": 48.9, "boxes": 92}})
    _write(
        root / "bench" / "train.json",
        {
            "runs": [
                {
                    "config": "oadp_demo",
                    "device": "cpu",
                    "oadp": {"median_s": 1.2, "peak_mib": 1500},
                    "plain_faster_rcnn": {"median_s": 1.0, "peak_mib": 1200},
                    "ratio": 1.2,
                    "target_ratio": 1.3,
                }
            ]
        },
    )


def test_report_renders_from_stored_results(tmp_path):
    _stored_run(tmp_path)
    out = tmp_path / "report"
    report.main(
        ["--experiments", "vild_demo", "oadp_demo", "--evaluate-dir", str(tmp_path / "evaluate")]
        + ["--train-dir", str(tmp_path / "train"), "--recall", str(tmp_path / "recall.json")]
        + ["--bench-dir", str(tmp_path / "bench"), "--out-dir", str(out)]
    )
    text = (out / "summary.md").read_text()
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| experiment"))
    assert "novel AP50" in header and "APr" in header and "APc" in header and "open-ended acc." in header
    assert "| oadp_demo | 21.2 | 41.5 | 33.0 |" in text  # values as stored, one decimal
    assert "| vild_demo | 12.5 | 40.0 |" in text
    assert "–" in next(line for line in lines if line.startswith("| vild_demo"))  # apc None: not a number
    assert "base AR@100 18.0" in text
    assert "OADP 1.20 s vs plain Faster R-CNN 1.00 s (ratio 1.20" in text
    for png in ("pr_curves.png", "per_class_ap.png", "loss_curves.png", "transfer.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert f"]({png})" in text


def test_report_without_optional_files_still_writes_everything(tmp_path):
    _write(tmp_path / "evaluate" / "x_demo" / "metrics.json", {"novel_ap50": 0.0, "base_ap50": 0.0})
    out = tmp_path / "report"
    report.main(["--experiments", "x_demo", "--evaluate-dir", str(tmp_path / "evaluate"), "--out-dir", str(out)])
    text = (out / "summary.md").read_text()
    assert "(no recall file)" in text and "(no benchmark folder given)" in text
    assert all((out / p).exists() for p in ("pr_curves.png", "per_class_ap.png", "loss_curves.png", "transfer.png"))


def test_report_names_a_missing_or_foreign_metrics_file(tmp_path):
    with pytest.raises(report.ReportError, match=r"nothing_demo/metrics.json: no metrics for experiment"):
        report.main(["--experiments", "nothing_demo", "--evaluate-dir", str(tmp_path), "--out-dir", str(tmp_path)])
    _write(tmp_path / "odd" / "metrics.json", {"accuracy": 1})
    with pytest.raises(report.ReportError, match="not a metrics file"):
        report.main(["--experiments", "odd", "--evaluate-dir", str(tmp_path), "--out-dir", str(tmp_path / "r")])
    assert not (tmp_path / "r" / "summary.md").exists()


def test_transfer_and_teacher_sections(tmp_path):
    metrics = {
        "baseline_demo": {"novel_ap50": 10.0, "base_ap50": 40.0},
        "vild_demo": {"novel_ap50": 17.5, "base_ap50": 39.0},
        "oadp_demo": {"novel_ap50": 21.25, "base_ap50": 41.5},
        "oadp_other": {"novel_ap50": 5.0, "base_ap50": 5.0},  # no baseline_other: not compared
    }
    lines = report.transfer_lines(list(metrics), metrics)
    assert lines == [
        "- vild_demo: novel AP50 17.5 vs 10.0 (+7.5); base AP50 39.0 vs 40.0 (-1.0)",
        "- oadp_demo: novel AP50 21.2 vs 10.0 (+11.2); base AP50 41.5 vs 40.0 (+1.5)",
    ]
    oe = {"accuracy": 70.0, "not_in_vocab_rate": 0.0, "base_accuracy": 80.0, "novel_accuracy": 25.0}
    metrics["baseline_demo"]["open_ended"] = oe
    metrics["vild_demo"]["open_ended"] = dict(oe, base_accuracy=78.5, novel_accuracy=61.25)
    assert report.transfer_lines(list(metrics), metrics)[0] == (
        "- vild_demo: novel AP50 17.5 vs 10.0 (+7.5); base AP50 39.0 vs 40.0 (-1.0); ground-truth boxes classified "
        "right (bbox head, all classes): novel 61.2 vs 25.0 (+36.2), base 78.5 vs 80.0"
    )
    assert "ground-truth" not in report.transfer_lines(list(metrics), metrics)[1]  # oadp_demo has none
    metrics["vild_demo"]["open_ended"].update(object_novel_accuracy=75.0, object_base_accuracy=70.5)
    metrics["vild_demo"]["open_ended"]["base_named_novel_rate"] = 74.25
    metrics["baseline_demo"]["open_ended"]["base_named_novel_rate"] = 2.0
    assert report.transfer_lines(list(metrics), metrics)[0].endswith(
        "base 78.5 vs 80.0, base boxes named as a novel class 74.2 vs 2.0; object head: novel 75.0 (+50.0 over the "
        "baseline's bbox head), base 70.5"
    )
    teacher = {
        "clip_model": "OADP-Teacher-ViT-4H",
        "classes": ["a", "b", "c", "d"],
        "training": {"steps": 100, "batch_size": 32, "seconds": 5.0, "loss_first": 3.0, "loss_last": 1.0},
        "zero_shot": {
            "chance": 0.25,
            "crops": {"vild": {"base": 0.9, "novel": 0.85, "all": 0.8875}},
            "scenes": {"crops": {"oake_object": {"vild": {"base": 0.75, "novel": None, "all": 0.75}}}},
        },
    }
    table = report.teacher_lines(teacher)
    assert "| held-out captioned crops | 90.0 | 85.0 | 88.8 |" in table
    assert "| scene objects, oake object | 75.0 | – | 75.0 |" in table
    assert "chance 25.0" in table[-1] and "100 steps" in table[-1]
    assert "not a zeroshot.json" in report.teacher_lines({"x": 1})[0]
    teacher["zero_shot"]["similar_pairs"] = [
        {"classes": ["a", "d"], "image": 0.997, "text": 0.96},
        {"classes": ["b", "c"], "image": 0.81, "text": 0.5},
    ]
    last = report.teacher_lines(teacher)[-1]
    assert last.endswith("a vs d 1.00 / 0.96; b vs c 0.81 / 0.50.") and last.startswith("Least separated")
    del teacher["zero_shot"]["similar_pairs"]
    # the summary renders them from stored files only
    _stored_run(tmp_path)
    for e in ("baseline_demo",):
        _write(tmp_path / "evaluate" / e / "metrics.json", {"novel_ap50": 2.0, "base_ap50": 30.0})
    _write(tmp_path / "teacher.json", teacher)
    report.main(
        [
            "--experiments", "baseline_demo", "vild_demo", "oadp_demo",
            "--evaluate-dir", str(tmp_path / "evaluate"), "--teacher", str(tmp_path / "teacher.json"),
            "--out-dir", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "vild_demo: novel AP50 12.5 vs 2.0 (+10.5)" in text and "## CLIP teacher" in text
