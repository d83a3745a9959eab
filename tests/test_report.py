"""The report renders from stored files only: metrics, curves, per-class AP, training scalars, benchmarks."""

from __future__ import annotations

import json
import re

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
    assert "(no recall file)" in text and "(no benchmarks folder given)" in text
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


def test_seed_runs_are_grouped_into_mean_and_range(tmp_path):
    """Runs E+seedN join experiment E: the seed table shows mean (min–max) of novel / base / all AP50 over the seeds
    (one seed: its value, no range), the detection table keeps every run, and the transfer lines compare means."""
    novel_base_all = {
        "baseline_demo": (23.5, 83.8, 60.0),
        "baseline_demo+seed1": (14.7, 81.7, 58.0),
        "baseline_demo+seed2": (17.0, 80.0, 55.0),
        "vild_demo": (32.3, 49.8, 40.0),
        "vild_demo+seed1": (25.8, 54.0, 45.0),
        "vild_demo+seed2": (31.0, 50.0, 41.0),
        "oadp_demo": (32.5, 55.5, 47.0),
    }
    for run, (novel, base, every) in novel_base_all.items():
        oe = {"novel_accuracy": novel + 1, "base_accuracy": base - 1, "accuracy": 50.0, "not_in_vocab_rate": 0.0}
        metrics = {"novel_ap50": novel, "base_ap50": base, "all_ap50": every, "open_ended": oe}
        _write(tmp_path / "evaluate" / run / "metrics.json", metrics)
    out = tmp_path / "out"
    runs = ["baseline_demo", "vild_demo", "oadp_demo", "vild_demo+seed2", "baseline_demo+seed1"]
    runs += ["baseline_demo+seed2", "vild_demo+seed1"]
    report.main(["--experiments", *runs, "--evaluate-dir", str(tmp_path / "evaluate"), "--out-dir", str(out)])
    text = (out / "summary.md").read_text()
    baseline = "| baseline_demo | 3 seeds: config's, 1, 2 | 18.4 (14.7–23.5) | 81.8 (80.0–83.8) | 57.7 (55.0–60.0) |"
    assert baseline in text
    assert "| vild_demo | 3 seeds: config's, 2, 1 | 29.7 (25.8–32.3) | 51.3 (49.8–54.0) | 42.0 (40.0–45.0) |" in text
    assert "| oadp_demo | 1 seed: config's | 32.5 | 55.5 | 47.0 |" in text
    assert "| vild_demo+seed1 | 25.8 | 54.0 | 45.0 |" in text  # every run keeps its row in the detection table
    # relative comparisons: means (vild 29.7 vs baseline 18.4), not the config-seed runs (32.3 vs 23.5)
    assert "- vild_demo: novel AP50 29.7 vs 18.4 (+11.3); base AP50 51.3 vs 81.8 (-30.6)" in text
    assert "ground-truth boxes classified right (bbox head, all classes): novel 30.7 vs 19.4 (+11.3)" in text
    assert "- oadp_demo: novel AP50 32.5 vs 18.4 (+14.1)" in text
    assert "vild_demo+seed" not in "".join(line for line in text.splitlines() if line.startswith("- "))
    assert (out / "transfer.png").read_bytes()[:4] == b"\x89PNG"


def test_run_names_and_mean_metrics():
    from pipeline.report import seeds as report_seeds

    assert report_seeds.group_runs(["a_x+seed2", "b_x", "a_x", "a_x+seed1", "a_x"]) == {
        "a_x": ["a_x", "a_x+seed2", "a_x+seed1"],
        "b_x": ["b_x"],
    }
    one = {"novel_ap50": 3, "apc": None}
    assert report_seeds.mean_metrics([one]) is one  # one run: unchanged (its formatting too)
    mean = report_seeds.mean_metrics(
        [
            {"novel_ap50": 10.0, "apc": None, "dataset": "demo", "open_ended": {"novel_accuracy": 1.0}},
            {"novel_ap50": 20.0, "apc": 4.0, "dataset": "demo", "open_ended": {"novel_accuracy": 3.0}},
            {"novel_ap50": 60.0, "apc": None, "dataset": "demo", "open_ended": None},
        ]
    )
    assert mean == {"novel_ap50": 30.0, "apc": 4.0, "dataset": "demo", "open_ended": {"novel_accuracy": 2.0}}


def test_report_shows_each_trainings_environment(tmp_path):
    """The report reads the environment record of every run's final.pth: runs with the same one share a line;
    differing ones get a warning; a final.pth without one says so."""
    import torch

    from pipeline.core import environment

    env = environment.environment()
    other = {**env, "torch_cpu_capability": "AVX512", "torch_num_threads": 16}
    for run, record in (("vild_demo", env), ("vild_demo+seed1", env), ("oadp_demo", other), ("baseline_demo", None)):
        _write(tmp_path / "evaluate" / run / "metrics.json", {"novel_ap50": 1.0, "base_ap50": 2.0})
        meta = {"experiment": run} if record is None else {"experiment": run, "environment": record}
        (tmp_path / "train" / run).mkdir(parents=True)
        torch.save({"state_dict": {"w": torch.zeros(3)}, "meta": meta}, tmp_path / "train" / run / "final.pth")
    out = tmp_path / "out"
    report.main(
        ["--experiments", "vild_demo", "vild_demo+seed1", "oadp_demo", "baseline_demo"]
        + ["--evaluate-dir", str(tmp_path / "evaluate"), "--train-dir", str(tmp_path / "train"), "--out-dir", str(out)]
    )
    section = (out / "summary.md").read_text().split("## Training environment")[1].split("## Plots")[0]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert lines[0] == f"- vild_demo, vild_demo+seed1: {environment.describe(env)}"
    assert lines[1].startswith("- oadp_demo: torch ") and "torch CPU capability AVX512; 16 threads" in lines[1]
    assert lines[2] == "- baseline_demo: not recorded"
    assert "ran in different environments" in lines[3] and len(lines) == 4
    assert f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}" in lines[0]


def test_train_seeds_add_seed_runs_to_the_plan(snakemake_bin, tmp_path):
    """train.seeds [1, 2]: every experiment E also trains (its config, randomness.seed=N, the caches of E's branches),
    predicts and is evaluated as E+seedN, and the report reads every run; with the default [] the plan has the
    experiments alone, their commands without a seed option."""
    from tests.test_workflow import snakemake

    def plan(*args):
        proc = snakemake(snakemake_bin, tmp_path, "-n", "-p", *args)
        lines = (proc.stdout + proc.stderr).splitlines()
        fits = [x for x in lines if "python -m pipeline.train" in x and " fit " in x]
        evaluations = [x for x in lines if "python -m pipeline.evaluate" in x]
        reports = [x for x in lines if "python -m pipeline.report" in x]
        return fits, evaluations, reports

    fits, evaluations, reports = plan()
    assert len(fits) == len(evaluations) == 3 and len(reports) == 1
    assert not any("randomness.seed" in x for x in fits)
    assert all(re.search(r"--experiment=(\S+) .* --config=\1$", x.split(" 2>&1")[0]) for x in fits)
    assert "--experiments baseline_demo vild_demo oadp_demo " in reports[0]
    seeds = tmp_path / "seeds.yaml"
    seeds.write_text("train: {seeds: [1, 2], options: {randomness.seed: 5}}\n")
    fits, evaluations, reports = plan("--configfile", str(seeds))
    assert len(fits) == len(evaluations) == 9
    (vild,) = [x for x in fits if "--experiment=vild_demo+seed2 " in x]
    assert "--work-dir results/train/vild_demo+seed2 " in vild and "--objects results/oake/demo/objects/" in vild
    assert "--blocks" not in vild and "--config=vild_demo --cfg-options randomness.seed=2" in vild
    assert vild.index("randomness.seed=5") < vild.index("randomness.seed=2")  # after train.options: the run's wins
    (oadp,) = [x for x in fits if "--experiment=oadp_demo+seed1 " in x]
    assert "--globals" in oadp and "--blocks" in oadp and "--config=oadp_demo --cfg-options randomness.seed=1" in oadp
    assert any("--out-dir results/evaluate/baseline_demo+seed1 " in x for x in evaluations)
    runs = "baseline_demo baseline_demo+seed1 baseline_demo+seed2 vild_demo vild_demo+seed1 vild_demo+seed2 oadp_demo "
    assert f"--experiments {runs}" in reports[0]
    (main,) = [x for x in fits if "--experiment=vild_demo " in x]
    assert "randomness.seed=5" in main and "--config=vild_demo" in main and "randomness.seed=2" not in main


def _tables(text: str) -> list[int]:
    """Line numbers where a markdown table starts."""
    lines = text.splitlines()
    return [k for k, line in enumerate(lines) if line.startswith("|") and (k == 0 or not lines[k - 1].startswith("|"))]


def test_a_dry_runs_report_says_dry_run_in_the_title_every_table_and_every_figure(tmp_path, monkeypatch):
    from pipeline.core import dry_run as dry
    from pipeline.report import marks

    _stored_run(tmp_path)
    _write(tmp_path / "teacher.json", {"zero_shot": {"crops": {"vild": {"base": 0.5}}}})  # one more table
    titles, mark_figure = [], marks.mark_figure

    def spy(fig):  # the real marking, then what it wrote
        mark_figure(fig)
        titles.append(fig._suptitle.get_text())

    monkeypatch.setattr(marks, "mark_figure", spy)
    argv = ["--experiments", "vild_demo", "oadp_demo", "--evaluate-dir", str(tmp_path / "evaluate")]
    argv += ["--train-dir", str(tmp_path / "train"), "--teacher", str(tmp_path / "teacher.json")]
    report.main([*argv, "--out-dir", str(tmp_path / "plain")])
    plain = (tmp_path / "plain" / "summary.md").read_text()
    assert "DRY RUN" not in plain and titles == [] and len(_tables(plain)) == 3  # detection, seeds, teacher
    metrics = json.loads((tmp_path / "evaluate/oadp_demo/metrics.json").read_text())
    _write(tmp_path / "evaluate/oadp_demo/metrics.json", {**metrics, "dry_run": True})  # one run is a dry run
    report.main([*argv, "--out-dir", str(tmp_path / "dry")])
    text = (tmp_path / "dry" / "summary.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "# OADP-Flow report: DRY RUN" and "not results" in text
    starts = _tables(text)
    assert len(starts) == 3
    for k in starts:  # the line above every table (after one blank line) is the warning
        assert lines[k - 1] == "" and lines[k - 2] == marks.TABLE_NOTE, lines[k - 3 : k + 1]
    assert lines[2] == f"> {dry.WARNING}."
    assert titles == [marks.FIGURE_TITLE] * 4 and "DRY RUN" in marks.FIGURE_TITLE  # the four plots


def _gallery_data(root):
    """Two 160x120 grey val images; categories 0, 1 base and 2 novel (num_base 2). Image 2 holds the novel box."""
    from PIL import Image

    for name in ("a.png", "b.png"):
        (root / "val").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (160, 120), (128, 128, 128)).save(root / "val" / name)
    annotations = {
        "images": [{"id": 1, "file_name": "a.png", "width": 160, "height": 120},
                   {"id": 2, "file_name": "b.png", "width": 160, "height": 120}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 30, 30]},
                        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [80, 60, 40, 40]}],
        "categories": [{"id": 0, "name": "ball"}, {"id": 1, "name": "cup"}, {"id": 2, "name": "kite"}],
    }  # fmt: skip
    _write(root / "val.json", annotations)
    # image 2: the top detection (kite 0.9) is drawn, the second (cup 0.2) is not: one ground-truth box there
    detections = [
        {"image_id": 2, "category_id": 2, "bbox": [70, 50, 50, 50], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [2, 60, 20, 50], "score": 0.2},
    ]
    _write(root / "evaluate" / "x_demo" / "detections.json", detections)
    _write(root / "evaluate" / "x_demo" / "metrics.json", {"novel_ap50": 1.0, "base_ap50": 2.0})


def test_val_gallery_puts_every_experiment_beside_the_ground_truth_on_the_same_images(tmp_path):
    """One picture: a row per val image (the one with a novel box first), ground truth then one column per experiment
    (its config-seed run); each cell the image enlarged to a shorter side >= 360 px (120 px x 3), the run's best
    objects, as many as ground-truth boxes, one name per object."""
    from PIL import Image

    from pipeline.core.render import class_colour
    from pipeline.report.val_gallery import CAPTION_PX

    _gallery_data(tmp_path)
    # y_demo: the same novel object named twice (kite 0.8 and cup 0.7 on one box): one name drawn, the strongest
    _write(tmp_path / "evaluate" / "y_demo" / "metrics.json", {"novel_ap50": 1.0, "base_ap50": 2.0})
    _write(tmp_path / "evaluate" / "y_demo+seed1" / "metrics.json", {"novel_ap50": 1.0, "base_ap50": 2.0})
    _write(tmp_path / "evaluate" / "y_demo" / "detections.json", [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.7},
        {"image_id": 1, "category_id": 0, "bbox": [11, 10, 30, 30], "score": 0.8},
    ])  # fmt: skip
    out = tmp_path / "report"
    report.main(
        ["--experiments", "x_demo", "y_demo", "y_demo+seed1", "--evaluate-dir", str(tmp_path / "evaluate")]
        + ["--out-dir", str(out), "--val-annotations", str(tmp_path / "val.json")]
        + ["--val-images", str(tmp_path / "val")]
        + ["--num-base", "2", "--gallery-images", "2"]
    )
    picture = Image.open(out / "val_gallery.png").convert("RGB")
    w, h, k = 480, 360, 3  # cell size, scale
    assert picture.size == (3 * w, 2 * (h + CAPTION_PX))  # ground truth, x_demo, y_demo; two rows
    grey = (128, 128, 128)
    # row 0 is image 2 (it has a novel box): its ground truth outlined in the colour of "kite [novel]"
    novel = class_colour("kite [novel]")
    assert picture.getpixel((100 * k, CAPTION_PX + 100 * k - 1)) == novel  # bottom edge of gt box [80, 60, 120, 100]
    assert picture.getpixel((w + 70 * k, CAPTION_PX + 75 * k)) == novel  # left edge of x_demo's kite [70, 50, ...]
    assert picture.getpixel((w + 2 * k, CAPTION_PX + 85 * k)) == grey  # the cup (2nd of 1 allowed) not drawn
    assert picture.getpixel((2 * w + 70 * k, CAPTION_PX + 75 * k)) == grey  # y_demo found nothing there
    # row 1 is image 1: ball (base) in the ground truth; x_demo nothing; y_demo its ball 0.8, not the cup below it
    row1 = 2 * CAPTION_PX + h
    assert picture.getpixel((10 * k, row1 + 30 * k)) == class_colour("ball")  # left edge of [10, 10, 40, 40]
    assert picture.getpixel((w + 10 * k, row1 + 30 * k)) == grey
    assert picture.getpixel((2 * w + 11 * k, row1 + 30 * k)) == class_colour("ball")
    assert picture.getpixel((2 * w + 10 * k - 1, row1 + 30 * k)) == grey  # the cup's box [10, ...] suppressed
    text = (out / "summary.md").read_text()
    assert "## Val gallery" in text and "ground truth, then x_demo, y_demo" in text
    assert "![val gallery: ground truth | x_demo \\| y_demo](val_gallery.png)" in text
    with pytest.raises(ValueError, match="--val-annotations needs --val-images and --num-base"):
        report.main(["--experiments", "x_demo", "--out-dir", str(out), "--val-annotations", str(tmp_path / "v")])


def test_summary_html_shows_the_metrics_table_inline(tmp_path):
    _write(tmp_path / "evaluate" / "x_demo" / "metrics.json", {"novel_ap50": 12.25, "base_ap50": 40.0})
    out = tmp_path / "report"
    report.main(["--experiments", "x_demo", "--evaluate-dir", str(tmp_path / "evaluate"), "--out-dir", str(out)])
    html = (out / "summary.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html
    assert "<th>novel AP50</th>" in html and "<td>x_demo</td>" in html and "<td>12.2</td>" in html


def test_plots_are_sized_for_their_content_and_label_every_panel(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from pipeline.report import plots

    def rows(n):
        return [{"dataset": "coco", "name": f"c{i}", "split": "novel" if i % 4 == 0 else "base", "ap50": float(i)}
                for i in range(n)]  # fmt: skip

    small = plots.plot_per_class(["e"], {"e": rows(16)}, tmp_path / "a.png")
    large = plots.plot_per_class(["e"], {"e": rows(40)}, tmp_path / "b.png")
    lvis = plots.plot_per_class(["e"], {"e": rows(300)}, tmp_path / "c.png")
    assert small.get_size_inches()[0] < large.get_size_inches()[0] <= lvis.get_size_inches()[0]
    assert len(small.axes[0].patches) == 16 and len(lvis.axes[0].patches) == plots.MAX_BARS
    shown = [t.get_text() for t in lvis.axes[0].get_xticklabels()]
    assert shown[0] == "c299" and shown[-1] == "c0" and "top and bottom 30 of 300" in lvis.axes[0].get_title()

    scalars = {"e": [{"iter": i, "loss": 1.0 / i, "loss_cls": 0.5} for i in range(1, 4)]}
    losses = plots.plot_losses(["e"], scalars, tmp_path / "d.png")
    assert len(losses.axes) == len(plots.LOSS_KEYS)
    assert all(ax.get_ylabel() for ax in losses.axes)
    assert [ax.get_legend() is not None for ax in losses.axes] == [True, True, False, False, False, False]

    metrics = {"e": {"base_ap50": 30.0, "novel_ap50": 10.0, "open_ended": {"base_accuracy": 70.0}}}
    transfer = plots.plot_transfer(["e"], metrics, None, tmp_path / "e.png")
    det, cls = transfer.axes
    assert "AP50" in det.get_ylabel() and "accuracy" in cls.get_ylabel()
    assert [p.get_height() for p in det.patches] == [30.0, 10.0] and [p.get_height() for p in cls.patches] == [70.0, 0]
