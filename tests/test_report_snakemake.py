"""``snakemake --report``: the project's report rule run by Snakemake on stored results, then Snakemake's report of
it: every picture is inside the one HTML file, the landing page shows the headline numbers and the transfer plot,
and hostile names stay text.

The results the report reads are written here (metrics, curves, detections, val images, a detect folder written by
the real page writer with a hostile vocabulary, benchmark files), so only the report job runs (``--allowed-rules
report``): seconds instead of a pipeline run.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.test_report_pages import XSS, Page, assert_safe

CLASSES = ["red circle", "blue square", "green star", "red square", "blue circle"]  # the demo's; 3 base
RUNS = {"baseline_demo": (12.5, 80.0, 60.0), "vild_demo": (25.0, 60.0, 50.0), "oadp_demo": (31.5, 62.0, 53.0)}
VOCABULARY = ["red circle", "red star", XSS]


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _val_images(root: Path) -> dict:
    """Four 320 x 240 val images with two shapes each, and their annotation file (ids 0..4, 3 base)."""
    folder = root / "results/demo_data/images/val"
    folder.mkdir(parents=True)
    images, annotations = [], []
    colours = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 180, 60)}
    for i in range(4):
        picture = Image.new("RGB", (320, 240), (235, 235, 225))
        draw = ImageDraw.Draw(picture)
        for k, cat in enumerate((i % 5, (i + 3) % 5)):
            x, y, s = 30 + 150 * k, 40 + 20 * i, 90
            colour = colours[CLASSES[cat].split()[0]]
            if "circle" in CLASSES[cat]:
                draw.ellipse([x, y, x + s, y + s], fill=colour)
            else:
                draw.rectangle([x, y, x + s, y + s], fill=colour)
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + i, "category_id": cat,
                                "bbox": [x, y, s, s], "area": s * s, "iscrowd": 0})  # fmt: skip
        picture.save(folder / f"{100 + i:012d}.jpg", quality=92)
        images.append({"id": 100 + i, "file_name": f"{100 + i:012d}.jpg", "width": 320, "height": 240})
    data = {"images": images, "annotations": annotations,
            "categories": [{"id": k, "name": n} for k, n in enumerate(CLASSES)]}  # fmt: skip
    _write(root / "results/annotations/demo/val.all.min.json", data)
    return data


def _detections(annotations: dict, quality: float) -> list[dict]:
    """Per ground-truth box: the right class (score ``quality``) and two near-duplicates of other names."""
    out = []
    for a in annotations["annotations"]:
        x, y, w, h = a["bbox"]
        for j, (cat, score) in enumerate(((a["category_id"], quality), ((a["category_id"] + 1) % 5, quality - 0.2),
                                          ((a["category_id"] + 2) % 5, quality - 0.3))):  # fmt: skip
            out.append({"image_id": a["image_id"], "category_id": cat, "bbox": [x + j, y + j, w, h], "score": score})
    return out


def stored_results(root: Path) -> None:
    """Everything the report rule reads, as the stages would have written it."""
    import torch

    from pipeline.core.images import ImageItem
    from pipeline.detect.pages import ScoreBook, index_html, write_picture

    annotations = _val_images(root)
    recall = [i / 100 for i in range(101)]
    for k, (run, (novel, base, every)) in enumerate(RUNS.items()):
        metrics = {"novel_ap50": novel, "base_ap50": base, "all_ap50": every, "novel_ap": novel / 2,
                   "base_ap": base / 2, "all_ap": every / 2, "ap": 20.0, "apr": novel / 3, "apc": 20.0, "apf": 30.0,
                   "dry_run": False}  # fmt: skip
        _write(root / f"results/evaluate/{run}/metrics.json", metrics)
        curve = [max(0.0, 1 - r) for r in recall]
        _write(root / f"results/evaluate/{run}/pr_curves.json",
               {"recall": recall, "coco": {"mean": {"all": curve, "base": curve, "novel": [c / 2 for c in curve]}}})
        _write(root / f"results/evaluate/{run}/per_class_ap.json",
               [{"dataset": "coco", "iou_type": "bbox", "category_id": i, "name": n, "split": "base" if i < 3 else
                 "novel", "ap50": 10.0 * (i + k)} for i, n in enumerate(CLASSES)])  # fmt: skip
        _write(root / f"results/evaluate/{run}/detections.json", _detections(annotations, 0.5 + 0.15 * k))
        (root / f"results/train/{run}").mkdir(parents=True)
        torch.save({"state_dict": {}, "meta": {"experiment": run}}, root / f"results/train/{run}/final.pth")
    _write(root / "results/proposals/demo/recall.json", {"base": {"AR@100": 40.0, "R@100@0.5": 80.0, "boxes": 9}})
    _write(root / "results/teacher/zeroshot.json", {
        "clip_model": "OADP-Teacher-ViT-4H", "classes": CLASSES,
        "zero_shot": {"chance": 0.2, "crops": {"vild": {"base": 0.9, "novel": 0.7, "all": 0.8}}},
    })  # fmt: skip
    detect = root / "results/detect/vild_demo"
    book, detections, pictures = ScoreBook(0.3), [], []
    for im in annotations["images"][:2]:
        item = ImageItem(im["id"], root / "results/demo_data/images/val" / im["file_name"])
        found = [dict(d, category_name=VOCABULARY[d["category_id"] % 3], file_name=im["file_name"])
                 for d in _detections(annotations, 0.6) if d["image_id"] == im["id"]]  # fmt: skip
        for d in found:
            if d["category_name"] == "red star":
                d["score"] = 0.12  # below the threshold: no detection, its best score on the page
        kept = book.keep(found)
        detections += kept
        pictures.append(write_picture(item, kept, detect / "pictures", 20))
    _write(detect / "detections.json", detections)
    (detect / "index.html").write_text(index_html("vild_demo", VOCABULARY, {"red circle"}, detections, pictures, 0.3,
                                                  book.best_below))  # fmt: skip
    for rel, wall in (("train/oadp_demo", 400.0), ("train/vild_demo", 300.0), ("teacher", 60.0)):
        path = root / f"results/benchmarks/{rel}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{wall}\t0:00:00\t900.0\t{wall * 1.8}\n")


def _script_value(text: str, script_id: str, name: str):
    """The JSON value of ``var NAME = ...;`` in the report's ``<script id=...>``."""
    match = re.search(rf'<script id="{script_id}">\s*var {name} = (.*?);\s*</script>', text, re.S)
    assert match, name
    return json.loads(match.group(1))


def _decoded(uri: str) -> tuple[str, bytes]:
    head, _, data = uri.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), head[:40]
    return head[5:-7], base64.b64decode(data)


@pytest.fixture(scope="module")
def snakemake_report(tmp_path_factory):
    """The report job and ``snakemake --report report.html`` on stored results; the report.html text."""
    from tests.test_workflow import snakemake

    snakemake_bin = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    if snakemake_bin is None:
        pytest.skip("snakemake is not installed")
    root = tmp_path_factory.mktemp("report_run")
    stored_results(root)
    only = ("results/report/summary.md", "--allowed-rules", "report")  # the target first: --allowed-rules takes a list
    snakemake(snakemake_bin, root, "--cores", "1", *only)
    snakemake(snakemake_bin, root, "--report", "report.html", *only)
    return root, (root / "report.html").read_text()


@pytest.mark.slow
def test_every_picture_of_the_snakemake_report_is_inside_it(snakemake_report):
    root, text = snakemake_report
    results = _script_value(text, "results", "results")
    by_name = {r["name"]: r for r in results.values()}
    for name in ("summary.html", "val_gallery.png", "transfer.png", "pr_curves.png", "per_class_ap.png",
                 "loss_curves.png", "summary.md"):  # fmt: skip
        assert name in by_name, sorted(by_name)
        mime, data = _decoded(by_name[name]["data_uri"])  # embedded, not a link to a file beside it
        if mime.startswith("image/"):
            assert Image.open(io.BytesIO(data)).size[0] > 100
    _, summary = _decoded(by_name["summary.html"]["data_uri"])
    page = assert_safe(summary.decode("utf-8"), [XSS])
    pictures = [a for t, a in page.tags if t == "img"]
    assert len(pictures) == 4 + 1 + 2  # the plots, the val gallery and the two detect pictures
    for attrs in pictures:  # every picture of the summary is inside it and decodes
        mime, data = _decoded(attrs["src"])
        assert Image.open(io.BytesIO(data)).format == {"image/png": "PNG", "image/jpeg": "JPEG"}[mime]
    gallery = Image.open(io.BytesIO(_decoded(by_name["val_gallery.png"]["data_uri"])[1]))
    assert gallery.size == (4 * 640, 4 * (480 + 24))  # ground truth, three experiments; 4 images, enlarged x 2


@pytest.mark.slow
def test_the_snakemake_report_opens_on_the_headline_table_and_the_transfer_plot(snakemake_report):
    root, text = snakemake_report
    landing = _script_value(text, "workflow-desc", "workflow_desc")
    page = assert_safe(landing, [])
    for result in _script_value(text, "results", "results").values():  # the captions, rendered from RST
        assert_safe(result["caption"], [])
    cells = [c.strip() for c in page.text if c.strip()]
    start = cells.index("oadp_demo")
    assert cells[start : start + 6] == ["oadp_demo", "1", "31.5", "62.0", "53.0", "10.5"]  # novel/base/all AP50, APr
    assert cells.index("baseline_demo") < cells.index("vild_demo") < start
    (plot,) = [a for t, a in page.tags if t == "img"]
    assert "transfer" in plot["alt"] and Image.open(io.BytesIO(_decoded(plot["src"])[1])).format == "PNG"
    summary = (root / "results/report/summary.md").read_text()
    assert "| train | 2 | 11 min 40 s | 21 min 00 s | train/oadp_demo (6 min 40 s) | 900 |" in summary
    detect_page = (root / "results/detect/vild_demo/index.html").read_text()
    shown = " ".join(" ".join(Page(detect_page).text).split())
    assert "red star novel 0 none above 0.3: its best box scored 0.12" in shown
