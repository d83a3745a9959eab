"""The pages and pictures a person reads: hostile names stay text in every page and plot, the detect page explains
each name, the report's front page, benchmark table and ablation table."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from pipeline import report

XSS = "<img src=x onerror=alert(2)>"
HOSTILE = [
    XSS,
    "<script>alert(3)</script>",
    "[click](javascript:alert(1))",
    "![x](javascript:alert(4))",
    "a | b",
    "`code` *bold* &lt;b&gt;",
    "cost $\\foo$",
]
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "table", "thead", "tbody", "tr",
    "th", "td", "ul", "ol", "li", "img", "a", "label", "input", "code", "em", "strong", "blockquote", "span",
    "figure", "figcaption", "b", "hr", "br", "div", "tt", "cite",
}  # fmt: skip


class Page(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)


def assert_safe(text: str, names=HOSTILE) -> Page:
    """No element or attribute but the page's own; every hostile name shown as text."""
    page = Page(text)
    for tag, attrs in page.tags:
        assert tag in ALLOWED_TAGS, (tag, attrs)
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        for key in ("href", "src"):
            value = attrs.get(key, "").strip().lower()
            assert not value.startswith(("javascript:", "vbscript:")), (tag, attrs)
            if tag == "img":
                assert value.startswith("data:image/") or not value.startswith(("http", "//")), attrs
    shown = " ".join("".join(page.text).split())
    for name in names:
        assert " ".join(name.split()) in shown, name
    return page


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _hostile_run(root: Path) -> list[str]:
    """Stored results whose run names, class names, vocabulary and file names are hostile."""
    runs = ["baseline_demo", XSS, "[click](javascript:alert(1))"]
    for i, run in enumerate(runs):
        _write(root / "evaluate" / run / "metrics.json", {"novel_ap50": 10.0 + i, "base_ap50": 40.0, "all_ap50": 30.0})
        rows = [{"dataset": "coco", "iou_type": "bbox", "name": n, "split": "novel", "ap50": 5.0} for n in HOSTILE]
        _write(root / "evaluate" / run / "per_class_ap.json", rows)
    teacher = {
        "classes": HOSTILE,
        "zero_shot": {"crops": {"vild": {"base": 0.5}}, "similar_pairs": [
            {"classes": [HOSTILE[1], HOSTILE[3]], "image": 0.9, "text": 0.8}]},
    }  # fmt: skip
    _write(root / "teacher.json", teacher)
    detect = root / "detect" / "vild_demo"
    (detect / "pictures").mkdir(parents=True)
    Image.new("RGB", (40, 30), (90, 90, 90)).save(detect / "pictures" / f"{XSS}.jpg")
    dets = [{"image_id": 1, "category_id": k, "bbox": [1, 1, 5, 5], "score": 0.9, "category_name": n,
             "file_name": f"{XSS}.jpg"} for k, n in enumerate(HOSTILE)]  # fmt: skip
    _write(detect / "detections.json", dets)
    return runs


def test_hostile_names_stay_text_in_summary_md_and_html_and_plots(tmp_path):
    """Run names, class names (plots, teacher pairs), a detect vocabulary and picture file names that are HTML,
    Markdown links or mathtext: summary.html holds no element or attribute of theirs, shows each as text, embeds
    the detect picture; the per-class plot draws `cost $\\foo$` (mathtext would raise)."""
    runs = _hostile_run(tmp_path)
    out = tmp_path / "report"
    report.main(
        ["--experiments", *runs, "--evaluate-dir", str(tmp_path / "evaluate"),
         "--teacher", str(tmp_path / "teacher.json"), "--detect-dir", str(tmp_path / "detect" / "vild_demo"),
         "--out-dir", str(out)]
    )  # fmt: skip
    html = (out / "summary.html").read_text()
    page = assert_safe(html, [XSS, "[click](javascript:alert(1))", "<script>alert(3)</script>", "a | b"])
    assert "onerror" not in {k for _, attrs in page.tags for k in attrs}
    pictures = [attrs for tag, attrs in page.tags if tag == "img"]
    assert any(a["alt"] == XSS and a["src"].startswith("data:image/jpeg;base64,") for a in pictures)
    assert all(a["src"].startswith("data:image/") for a in pictures)  # plots and pictures embedded
    assert len(pictures) == 4 + 1  # the four plots and the one detect picture
    for name in HOSTILE:  # every vocabulary name counted, as text
        assert " ".join(f"{name} 1".split()) in " ".join("".join(page.text).split())
    assert_safe((out / "front.html").read_text(), [XSS, "[click](javascript:alert(1))"])
    assert (out / "per_class_ap.png").read_bytes()[:4] == b"\x89PNG"


def test_plots_draw_names_as_plain_text(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from pipeline.report import plots

    rows = [{"dataset": "coco", "name": n, "split": "base", "ap50": 1.0} for n in ("cost $\\foo$", "$x$", "_hidden")]
    fig = plots.plot_per_class(["$e$"], {"$e$": rows}, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 0
    labels = fig.axes[0].get_xticklabels()
    # what matplotlib shows: the name itself, not mathtext (a label is drawn as math only with unescaped `$` pairs)
    assert [t._preprocess_math(t.get_text()) for t in labels] == [("cost $\\foo$", False), ("$x$", False),
                                                                  ("\u200b_hidden", False)]  # fmt: skip
    title = fig.axes[0].title
    assert title._preprocess_math(title.get_text())[0].startswith("$e$: AP50")  # shown as written
    transfer = plots.plot_transfer(["$a$ $b$"], {"$a$ $b$": {"novel_ap50": 1.0}}, None, tmp_path / "b.png")
    label = transfer.axes[0].get_xticklabels()[0]
    assert label._preprocess_math(label.get_text()) == ("$a$ $b$", False)


def test_markdown_never_passes_raw_html():
    from pipeline.report.html import md_text, summary_html

    text = f"# t\n\n<div onclick=x>raw</div>\n\n| a |\n|---|\n| {md_text(XSS)} |\n\n<b onmouseover=y>inline</b>"
    page = assert_safe(summary_html(text, Path(".")), [XSS, "<div onclick=x>raw</div>", "<b onmouseover=y>inline</b>"])
    assert [t for t, _ in page.tags if t in ("div", "b")] == []


def test_detect_page_escapes_names_and_explains_each_name(tmp_path):
    """The detect index: hostile vocabulary and file names stay text; per name its detections and best score, or
    for a name without any, the best score its boxes got below the threshold; one name per object with the
    runners-up listed."""
    from pipeline.detect.pages import Picture, ScoreBook, index_html

    book = ScoreBook(0.3)
    found = [
        {"category_name": XSS, "score": 0.9, "bbox": [0, 0, 10, 10]},
        {"category_name": "red star", "score": 0.12, "bbox": [0, 0, 10, 10]},
        {"category_name": "red star", "score": 0.2, "bbox": [20, 0, 10, 10]},
        {"category_name": "<b>cat</b>", "score": 0.3, "bbox": [0, 0, 10, 10]},  # at the threshold: dropped
    ]
    kept = book.keep(found)
    assert kept == found[:1] and book.best_below == {"red star": 0.2, "<b>cat</b>": 0.3}
    picture = Picture(tmp_path / f"{XSS}.jpg", f"{XSS}.jpg", [(kept[0], [("<b>cat</b>", 0.3)])])
    names = [XSS, "red star", "<b>cat</b>", "dog"]
    text = index_html("vild_demo", names, {"dog"}, kept, [picture], 0.3, book.best_below)
    page = assert_safe(text, [XSS, "<b>cat</b>", f"{XSS}.jpg"])
    shown = " ".join(" ".join(page.text).split())
    assert "red star novel 0 none above 0.3: its best box scored 0.20" in shown
    assert "dog base 0 no box scored above 0.01 on these images" in shown
    assert f"{XSS} novel 1 best 0.90" in shown
    assert f"{XSS} 0.90 (also: <b>cat</b> 0.30)" in shown
    links = [a["href"] for t, a in page.tags if t == "a"]
    assert links == [f"pictures/{XSS}.jpg"]  # a click opens the full picture


def test_display_keeps_one_name_per_object_and_labels_apart():
    from pipeline.core.render import display_objects, place_labels, upscaled

    boxes = [(10, 10, 50, 50), (11, 10, 51, 50), (12, 12, 50, 50), (100, 10, 140, 50), (15, 15, 30, 30)]
    names = ["star", "square", "circle", "star", "star"]
    scores = [0.9, 0.8, 0.5, 0.7, 0.6]
    # box 1 and 2 overlap box 0 (IoU > 0.5): runners-up of it; box 4 is a star inside the star 0: suppressed
    assert display_objects(boxes, names, scores) == [(0, [("square", 0.8), ("circle", 0.5)]), (3, [])]
    # two boxes at one place: the second tag goes to the next free place (inside the top edge), not on the first
    corners = place_labels([(10, 30, 50, 60), (10, 30, 48, 58)], [(40, 12), (40, 12)], (100, 80))
    assert corners == [(10, 18), (10, 30)]
    small = Image.new("RGB", (320, 240))
    big, factor = upscaled(small, 480)
    assert factor == 2 and big.size == (640, 480) and upscaled(big, 480) == (big, 1)


def test_detect_picture_is_enlarged_and_draws_one_name_per_object(tmp_path):
    from pipeline.core.images import ImageItem
    from pipeline.core.render import class_colour
    from pipeline.detect.pages import write_picture

    Image.new("RGB", (160, 120), (128, 128, 128)).save(tmp_path / "a.png")
    dets = [
        {"category_name": "star", "score": 0.9, "bbox": [10, 10, 40, 40]},
        {"category_name": "square", "score": 0.8, "bbox": [11, 11, 40, 40]},
    ]
    picture = write_picture(ImageItem(1, tmp_path / "a.png"), dets, tmp_path / "pictures", 20)
    with Image.open(picture.path) as p:
        assert p.size == (160 * 4, 120 * 4)  # 120 px -> 480 px
        image = p.convert("RGB")
    assert picture.objects == [(dets[0], [("square", 0.8)])]

    def close(a, b):  # JPEG
        return all(abs(x - y) <= 40 for x, y in zip(a, b, strict=True))

    assert close(image.getpixel((40, 120)), class_colour("star"))  # left edge of the star box x 4
    assert close(image.getpixel((46, 120)), (128, 128, 128))  # no square outline beside it


def _bench(root: Path, rel: str, wall: float, cpu: float, rss: float = 100.0) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
    path.write_text(f"{header}\n{wall}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")


def test_benchmark_section_reads_the_runs_benchmark_files_slowest_stage_first(tmp_path):
    bench = tmp_path / "results" / "benchmarks"
    _bench(bench, "train/vild_demo.tsv", 300.0, 550.0, 2100.5)
    _bench(bench, "train/oadp_demo.tsv", 420.5, 800.0, 2500.0)
    _bench(bench, "teacher.tsv", 65.0, 120.0)
    _bench(bench, "oake_objects/demo/val/shard-000.tsv", 30.0, 20.0)
    (bench / "evaluate").mkdir()
    (bench / "evaluate" / "x.tsv").write_text("not a benchmark\n")
    _write(tmp_path / "evaluate" / "x_demo" / "metrics.json", {"novel_ap50": 1.0, "base_ap50": 2.0})
    out = tmp_path / "report"
    report.main(["--experiments", "x_demo", "--evaluate-dir", str(tmp_path / "evaluate"), "--out-dir", str(out),
                 "--benchmarks-dir", str(bench), "--bench-dir", str(tmp_path / "results" / "bench")])  # fmt: skip
    text = (out / "summary.md").read_text()
    section = text.split("## Benchmarks")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| stage")]
    assert [r.split(" | ")[0] for r in rows] == ["| train", "| teacher", "| oake_objects", "| evaluate"]
    assert rows[0] == "| train | 2 | 12 min 00 s | 22 min 30 s | train/oadp_demo (7 min 00 s) | 2500 |"
    assert rows[1] == "| teacher | 1 | 1 min 05 s | 2 min 00 s | teacher (1 min 05 s) | 100 |"
    assert rows[3] == "| evaluate | 0 | 0.0 s | 0.0 s | – | – |"
    assert "Summed over 4 jobs: 13 min 36 s wall, 24 min 50 s CPU" in section
    assert "Unreadable benchmark files: evaluate/x.tsv." in section
    assert "no benchmark files" not in text


def _seeded(root: Path, table: dict[str, tuple[float, float, float]]) -> None:
    for run, (novel, base, every) in table.items():
        _write(root / "evaluate" / run / "metrics.json", {"novel_ap50": novel, "base_ap50": base, "all_ap50": every})


def test_ablation_table_gives_each_variant_its_change_spread_and_difference(tmp_path):
    """oadp_demo (3 seeds) and two variants: no_block (same seeds: paired differences) and no_global (one seed:
    difference of the means, widest range). Hand-computed numbers; the same rows in summary.md, summary.html and
    ablation.csv."""
    _seeded(tmp_path, {
        "oadp_demo": (30.0, 50.0, 45.0), "oadp_demo+seed1": (32.0, 52.0, 46.0), "oadp_demo+seed2": (28.0, 51.0, 44.0),
        "oadp_demo-no_block": (25.0, 50.0, 43.0), "oadp_demo-no_block+seed1": (26.0, 53.0, 44.0),
        "oadp_demo-no_block+seed2": (24.0, 49.0, 42.0),
        "oadp_demo-no_global": (29.0, 51.0, 45.0),
        "vild_demo": (20.0, 40.0, 35.0),
    })  # fmt: skip
    variants = {
        "oadp_demo-no_block": {"from": "oadp_demo", "options": {"model.roi_head.block_head": None}},
        "oadp_demo-no_global": {"from": "oadp_demo", "description": "no global distillation <i>"},
        "unused-variant": {"from": "oadp_demo"},
    }
    runs = ["vild_demo", "oadp_demo", "oadp_demo+seed1", "oadp_demo+seed2", "oadp_demo-no_block",
            "oadp_demo-no_block+seed1", "oadp_demo-no_block+seed2", "oadp_demo-no_global"]  # fmt: skip
    out = tmp_path / "report"
    report.main(["--experiments", *runs, "--evaluate-dir", str(tmp_path / "evaluate"), "--out-dir", str(out),
                 "--variants", json.dumps(variants)])  # fmt: skip
    text = (out / "summary.md").read_text()
    table = [line for line in text.split("## Ablations")[1].splitlines() if line.startswith("| ")]
    assert table[0] == (
        "| run | changes | seeds | novel AP50 | Δ novel AP50 | base AP50 | Δ base AP50 | all AP50 | Δ all AP50 "
        "| published |"
    )
    full = "| oadp_demo | full method | 3 | 30.0 (28.0–32.0) |  | 51.0 (50.0–52.0) |  | 45.0 (44.0–46.0) |  | – |"
    assert table[1] == full
    # paired: novel -5, -6, -4 -> -5.0 (-6.0–-4.0) *; base 0, +1, -2 -> -0.3 (-2.0–+1.0); all -2, -2, -2 -> -2.0 *
    assert table[2] == (
        "| oadp_demo-no_block | model.roi_head.block_head=null | 3 | 25.0 (24.0–26.0) | -5.0 (-6.0–-4.0) * "
        "| 50.7 (49.0–53.0) | -0.3 (-2.0–+1.0) | 43.0 (42.0–44.0) | -2.0 * | – |"
    )
    # one seed against three: 29 - 30 = -1.0, range 29-32 .. 29-28 = -3.0 .. +1.0
    assert table[3].startswith("| oadp_demo-no_global | no global distillation \\<i\\> | 1 | 29.0 | -1.0 (-3.0–+1.0) |")
    assert len(table) == 4  # vild_demo is no variant of anything; unused-variant did not run
    page = assert_safe((out / "summary.html").read_text(), ["no global distillation <i>"])
    assert "-5.0 (-6.0–-4.0) *" in "".join(page.text)
    with (out / "ablation.csv").open() as f:
        rows = list(csv.DictReader(f))
    novel = {r["run"]: r for r in rows if r["metric"] == "novel_ap50"}
    no_block = novel["oadp_demo-no_block"]
    assert (no_block["diff_mean"], no_block["diff_min"], no_block["diff_max"]) == ("-5.0000", "-6.0000", "-4.0000")
    assert no_block["diff_beyond_seed_noise"] == "1"
    assert novel["oadp_demo-no_global"]["diff_beyond_seed_noise"] == "0" and novel["oadp_demo"]["diff_mean"] == ""
    assert len(rows) == 3 * 3
    with pytest.raises(ValueError, match="--variants: expected"):
        report.main(["--experiments", "vild_demo", "--evaluate-dir", str(tmp_path / "evaluate"), "--out-dir",
                     str(tmp_path / "x"), "--variants", '{"a": {}}'])  # fmt: skip


def test_front_page_has_the_headline_table_and_the_transfer_plot(tmp_path):
    _seeded(tmp_path, {"baseline_demo": (10.0, 50.0, 40.0), "oadp_demo": (30.0, 50.0, 45.0),
                       "oadp_demo+seed1": (34.0, 52.0, 46.0)})  # fmt: skip
    out = tmp_path / "report"
    report.main(["--experiments", "baseline_demo", "oadp_demo", "oadp_demo+seed1", "--evaluate-dir",
                 str(tmp_path / "evaluate"), "--out-dir", str(out)])  # fmt: skip
    page = assert_safe((out / "front.html").read_text(), [])
    cells = [c.strip() for c in page.text if c.strip()]
    assert ["oadp_demo", "2", "32.0 (30.0–34.0)", "51.0 (50.0–52.0)", "45.5 (45.0–46.0)"] == cells[
        cells.index("oadp_demo") : cells.index("oadp_demo") + 5
    ]
    (img,) = [a for t, a in page.tags if t == "img"]
    assert img["src"].startswith("data:image/png;base64,") and "transfer" in img["alt"]


def test_ablation_of_a_real_preset_puts_the_published_figure_beside_the_full_method(tmp_path):
    """The pyramid preset's names: the full method oadp_ov_coco has the reference README's 31.3 novel AP50 beside
    its measured row; the variants have no published row (none is in the reference notes)."""
    import yaml

    from tests.conftest import REPO

    preset = yaml.safe_load((REPO / "workflow/presets/ablation_pyramid.yaml").read_text())
    runs = ["oadp_ov_coco", *preset["variants"]]
    _seeded(tmp_path, {r: (30.0 - k, 55.0, 48.0) for k, r in enumerate(runs)})
    out = tmp_path / "report"
    report.main(["--experiments", *runs, "--evaluate-dir", str(tmp_path / "evaluate"), "--out-dir", str(out),
                 "--variants", json.dumps(preset["variants"])])  # fmt: skip
    table = [line for line in (out / "summary.md").read_text().split("## Ablations")[1].splitlines()
             if line.startswith("| oadp_ov_coco")]  # fmt: skip
    assert len(table) == 4
    assert table[0].startswith("| oadp_ov_coco | full method | 1 | 30.0 |")
    source = "reference README (LutingWang/OADP d641d28), Results, OV COCO: mAPN50"
    assert table[0].endswith(f"| novel AP50 31.3 ({source}) |")
    assert table[1].startswith("| oadp_ov_coco-object | object distillation only (no block head, no global head) | 1 "
                               "| 29.0 | -1.0 |")  # one seed each: no spread, no mark
    assert all(line.endswith("| – |") for line in table[1:])


def test_report_captions_interpolate_only_values_that_cannot_carry_markup():
    """The RST captions of snakemake --report are Jinja templates and docutils reads raw HTML: they may show only
    values the schema or a wildcard constraint restricts (the dataset enum, the dry-run flag, a run name)."""
    import re

    from tests.conftest import REPO

    allowed = {'snakemake.config["dataset"]', 'snakemake.config["dry_run"]', "snakemake.wildcards.experiment"}
    for caption in sorted((REPO / "workflow/report").glob("*.rst")):
        for expression in re.findall(r"\{\{(.*?)\}\}", caption.read_text(), re.S):
            assert expression.strip() in allowed, (caption.name, expression)


def test_an_lvis_ablation_compares_apr_apc_apf_ap():
    from pipeline.report.ablation import ablation_rows

    metrics = {
        "oadp_ov_lvis": {"novel_ap50": None, "apr": 20.0, "apc": 28.0, "apf": 32.0, "ap": 28.5},
        "oadp_ov_lvis+seed1": {"novel_ap50": None, "apr": 22.0, "apc": 28.0, "apf": 32.0, "ap": 28.5},
        "oadp_ov_lvis-no_global": {"novel_ap50": None, "apr": 19.0, "apc": 27.0, "apf": 32.5, "ap": 28.0},
        "oadp_ov_lvis-no_global+seed1": {"novel_ap50": None, "apr": 20.0, "apc": 27.5, "apf": 32.0, "ap": 28.0},
    }
    runs_of = {"oadp_ov_lvis": ["oadp_ov_lvis", "oadp_ov_lvis+seed1"],
               "oadp_ov_lvis-no_global": ["oadp_ov_lvis-no_global", "oadp_ov_lvis-no_global+seed1"]}  # fmt: skip
    variants = {"oadp_ov_lvis-no_global": {"from": "oadp_ov_lvis", "options": {"model.global_head": None}}}
    keys, rows = ablation_rows("oadp_ov_lvis", ["oadp_ov_lvis-no_global"], variants, runs_of, metrics)
    assert [k for k, _ in keys] == ["apr", "apc", "apf", "ap"]
    # paired: APr -1, -2 -> -1.5 (-2.0–-1.0) *; APc -1, -0.5 -> -0.8 *; APf +0.5, 0 -> +0.2 (+0.0–+0.5)
    assert [d.text(signed=True) for d in rows[1].differences] == [
        "-1.5 (-2.0–-1.0) *", "-0.8 (-1.0–-0.5) *", "+0.2 (+0.0–+0.5)", "-0.5 *"]  # fmt: skip
    assert rows[0].values[0].text() == "21.0 (20.0–22.0)"
