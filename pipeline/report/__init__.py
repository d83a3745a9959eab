"""Stage ``report``: one summary of the run from stored results (nothing is recomputed).

Command::

    python -m pipeline.report --experiments NAME ... --evaluate-dir results/evaluate --train-dir results/train
        [--recall results/proposals/<dataset>/recall.json] [--benchmarks-dir results/benchmarks]
        [--bench-dir results/bench] [--teacher zeroshot.json] [--variants JSON] --out-dir results/report

Reads per experiment ``<evaluate-dir>/<name>/metrics.json`` (required), ``pr_curves.json`` and
``per_class_ap.json`` (optional), and the training scalars ``<train-dir>/<name>/<timestamp>/vis_data/scalars.json``
(the newest run that logged losses). Writes (atomically):

* ``summary.md``: one table runs x metrics (novel / base / all AP50, AP, LVIS AP / APr / APc / APf when
  present, open-ended accuracy), the spread over training seeds (runs ``E+seedN`` grouped with ``E``: mean and
  min–max AP50, ``pipeline.report.seeds``), proposal recall (AR@100 base / novel), the novel AP50 of each distilled
  experiment over its ``baseline_*`` (same suffix; means over the seeds), the ablation tables of the config's
  ``variants`` (``--variants``, :mod:`pipeline.report.ablation`), the CLIP teacher's zero-shot accuracy
  (``--teacher``), what each stage of the run cost (wall and CPU time from Snakemake's benchmark files,
  :mod:`pipeline.report.benchmarks`) and the ``make bench`` figures when they exist, the numerics environment of
  every training (``final.pth`` meta), and the list of plots; every name in it is plain text
  (:func:`pipeline.report.html.md_text`);
* ``summary.html``: the same summary as one self-contained HTML page (raw HTML off, pictures embedded;
  :mod:`pipeline.report.html`);
* ``front.html``: the headline table and the transfer plot, the landing page of ``snakemake --report``
  (:mod:`pipeline.report.front`);
* ``ablation.csv``: the ablation tables' rows (a header alone without variants);
* ``pr_curves.png``, ``per_class_ap.png``, ``loss_curves.png``, ``transfer.png`` (:mod:`pipeline.report.plots`);
* with ``--val-annotations``, ``val_gallery.png`` and a section in ``summary.md``: the same val images for every
  experiment side by side, ground truth first, novel classes tagged (:mod:`pipeline.report.val_gallery`);
* with ``--detect-dir``, a gallery section in ``summary.md``: the pictures of ``pipeline.detect`` (an experiment with
  a free vocabulary), linked relative to the report folder (``pipeline.report.gallery``).

A missing optional file leaves its section out and says so; a missing or malformed metrics file is an error
naming it. Runs converted from the reference's released checkpoints (``train.import``) get their published figures
beside the measured ones (:mod:`pipeline.report.published`). When any metrics file says ``dry_run``, the summary
and every plot are marked DRY RUN (:mod:`pipeline.report.marks`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from pipeline.core import atomic
from pipeline.core.options import Command
from pipeline.report import ablation, benchmarks, marks, published, val_gallery
from pipeline.report import seeds as report_seeds
from pipeline.report.front import front_html
from pipeline.report.gallery import gallery_lines
from pipeline.report.html import md_text, summary_html
from pipeline.report.options import ReportOptions
from pipeline.report.plots import plot_losses, plot_per_class, plot_pr_curves, plot_transfer

log = logging.getLogger(__name__)

COLUMNS = [
    ("novel_ap50", "novel AP50"),
    ("base_ap50", "base AP50"),
    ("all_ap50", "all AP50"),
    ("novel_ap", "novel AP"),
    ("base_ap", "base AP"),
    ("all_ap", "all AP"),
    ("ap", "LVIS AP"),
    ("apr", "APr"),
    ("apc", "APc"),
    ("apf", "APf"),
]


class ReportError(ValueError):
    pass


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def load_metrics(evaluate_dir: Path, experiment: str) -> dict:
    path = evaluate_dir / experiment / "metrics.json"
    if not path.is_file():
        raise ReportError(f"{path}: no metrics for experiment {experiment!r} (run its evaluation first)")
    metrics = atomic.read_json(path)
    if not isinstance(metrics, dict) or "novel_ap50" not in metrics:
        raise ReportError(f"{path}: not a metrics file of pipeline.evaluate (no 'novel_ap50')")
    return metrics


def _optional_json(path: Path | None):
    if path is None or not path.is_file():
        return None
    return atomic.read_json(path)


def training_scalars(train_dir: Path, experiment: str) -> list[dict]:
    """Loss rows of the newest training run of ``experiment`` that logged any (mmengine's ``scalars.json``)."""
    import json

    runs = sorted((train_dir / experiment).glob("*/vis_data/scalars.json"), reverse=True)
    for path in runs:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if "loss" in r and "iter" in r]
        if rows:
            return rows
    return []


def metrics_table(experiments: Sequence[str], metrics: dict[str, dict]) -> str:
    cols = [(k, title) for k, title in COLUMNS if any(metrics[e].get(k) is not None for e in experiments)]
    has_oe = any("open_ended" in metrics[e] for e in experiments)
    header = ["experiment"] + [t for _, t in cols] + (["open-ended acc.", "not-in-vocab"] if has_oe else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in experiments:
        row = [md_text(e)] + [_fmt(metrics[e].get(k)) for k, _ in cols]
        if has_oe:
            oe = metrics[e].get("open_ended") or {}
            acc, niv = oe.get("accuracy"), oe.get("not_in_vocab_rate")
            row += [_fmt(acc), _fmt(niv)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def transfer_lines(experiments: Sequence[str], metrics: dict[str, dict]) -> list[str]:
    """Novel / base AP50 of every distilled experiment next to the baseline of the same suffix
    (``baseline_demo`` for ``vild_demo`` and ``oadp_demo``); empty without such a baseline."""
    lines = []
    for e in experiments:
        prefix, _, suffix = e.partition("_")
        base = f"baseline_{suffix}"
        if prefix == "baseline" or base not in metrics:
            continue
        m, b = metrics[e], metrics[base]
        if m.get("novel_ap50") is None or b.get("novel_ap50") is None:
            continue
        line = (
            f"- {md_text(e)}: novel AP50 {_fmt(m['novel_ap50'])} vs {_fmt(b['novel_ap50'])} "
            f"({m['novel_ap50'] - b['novel_ap50']:+.1f}); base AP50 {_fmt(m.get('base_ap50'))} vs "
            f"{_fmt(b.get('base_ap50'))} ({(m.get('base_ap50') or 0.0) - (b.get('base_ap50') or 0.0):+.1f})"
        )
        # the open-ended evaluation classifies every ground-truth box by the bbox head's embedding over the whole
        # vocabulary: the transfer of class knowledge itself, without the detection's ranking and localisation
        mo, bo = (x.get("open_ended") or {} for x in (m, b))
        if mo.get("novel_accuracy") is not None and bo.get("novel_accuracy") is not None:
            line += (
                f"; ground-truth boxes classified right (bbox head, all classes): novel "
                f"{_fmt(mo['novel_accuracy'])} vs {_fmt(bo['novel_accuracy'])} "
                f"({mo['novel_accuracy'] - bo['novel_accuracy']:+.1f}), base {_fmt(mo.get('base_accuracy'))} vs "
                f"{_fmt(bo.get('base_accuracy'))}"
            )
            if mo.get("base_named_novel_rate") is not None and bo.get("base_named_novel_rate") is not None:
                line += (
                    f", base boxes named as a novel class {_fmt(mo['base_named_novel_rate'])} vs "
                    f"{_fmt(bo['base_named_novel_rate'])}"
                )
            if mo.get("object_novel_accuracy") is not None:  # the distilled head's own, on the same boxes
                line += (
                    f"; object head: novel {_fmt(mo['object_novel_accuracy'])} "
                    f"({mo['object_novel_accuracy'] - bo['novel_accuracy']:+.1f} over the baseline's bbox head), "
                    f"base {_fmt(mo.get('object_base_accuracy'))}"
                )
        lines.append(line)
    return lines


def teacher_lines(teacher: dict) -> list[str]:
    """The teacher's zero-shot accuracies (pipeline.teacher's zeroshot.json) as a small table."""
    zs = teacher.get("zero_shot")
    if not isinstance(zs, dict):
        return [f"(not a zeroshot.json of pipeline.teacher: keys {sorted(teacher)})"]

    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    rows = [("held-out captioned crops", zs.get("crops", {}).get("vild", {}))]
    for name, acc in zs.get("scenes", {}).get("crops", {}).items():
        rows.append((f"scene objects, {md_text(name.replace('_', ' '))}", acc.get("vild", {})))
    lines = ["| test set | base | novel | all |", "|---|---|---|---|"]
    lines += [f"| {n} | {pct(a.get('base'))} | {pct(a.get('novel'))} | {pct(a.get('all'))} |" for n, a in rows]
    training = teacher.get("training", {})
    lines += [
        "",
        f"{md_text(teacher.get('clip_model', '?'))}, {training.get('steps', '?')} steps of "
        f"{training.get('batch_size', '?')} captioned crops ({training.get('seconds', '?')} s), loss "
        f"{training.get('loss_first') or 0:.2f} -> "
        f"{training.get('loss_last') or 0:.2f}; argmax over all {len(teacher.get('classes', []))} classes with "
        f"the ViLD-template text embeddings, chance {pct(zs.get('chance'))}.",
    ]
    pairs = [p for p in zs.get("similar_pairs", []) if isinstance(p, dict)][:3]
    if pairs:
        lines += [
            "",
            "Least separated classes (cosine of the held-out image centroids / of the text embeddings; near 1 = "
            "merged): "
            + "; ".join(
                f"{' vs '.join(md_text(c) for c in p['classes'])} {p['image']:.2f} / {p['text']:.2f}" for p in pairs
            )
            + ".",
        ]
    return lines


def summary_markdown(
    experiments: Sequence[str],
    metrics: dict[str, dict],
    recall: dict | None,
    bench_dir: Path | None,
    teacher: dict | None,
    plots: Sequence[str],
    environment: Sequence[str] = (),
    *,
    benchmarks_dir: Path | None = None,
    ablation_lines: Sequence[str] = (),
) -> str:
    """``experiments``: the runs (``E`` and its ``E+seedN``), grouped here by experiment."""
    groups, means = report_seeds.by_experiment(experiments, metrics)
    out = ["# OADP-Flow report", "", "## Detection (percent)", "", metrics_table(experiments, metrics), ""]
    out.append(
        "novel AP50 is the OV-COCO headline (generalized setting: all classes scored together, then sliced); "
        "APr is the OV-LVIS one. `–`: not evaluated or no ground truth."
    )
    out += ["", "## Spread over training seeds (AP50, percent: mean (min–max))", ""]
    out += report_seeds.seed_lines(groups, metrics) + [
        "",
        "Seeds: the config's own (run `E`) and every `train.seeds` N (run `E+seedN`); the comparisons below use the "
        "means.",
    ]
    out += ["", "## Class-agnostic proposals", ""]
    if recall:
        parts = [
            f"{split} AR@100 {_fmt(recall[split]['AR@100'])} (R@100 IoU 0.5: {_fmt(recall[split]['R@100@0.5'])}, "
            f"{recall[split]['boxes']} boxes)"
            for split in ("base", "novel", "all")
            if split in recall
        ]
        out += [f"- {p}" for p in parts]
    else:
        out.append("(no recall file)")
    if ablation_lines:
        out += ["", "## Ablations (percent)", "", *ablation_lines]
    effect = transfer_lines(list(groups), means)
    if effect:
        out += ["", "## Open-vocabulary transfer (novel AP50 over the baseline without distillation)", ""] + effect
    if teacher:
        out += ["", "## CLIP teacher (zero-shot, percent)", ""] + teacher_lines(teacher)
    out += ["", "## Benchmarks: what each stage of this run cost (slowest first)", ""]
    out += benchmarks.run_cost_lines(benchmarks_dir)
    bench = benchmarks.bench_lines(bench_dir)
    if bench:
        out += ["", "`make bench` figures:", "", *bench]
    if environment:
        out += ["", "## Training environment (what decides the floating-point results)", "", *environment]
    out += ["", "## Plots", ""]
    for p in plots:
        out += [f"### {p}", "", f"![{p}]({p})", ""]
    return "\n".join(out)


def run(options: ReportOptions) -> None:
    """Write the report (``summary.md``, ``summary.html``, ``front.html``, ``ablation.csv``, the plots and the
    val gallery) into ``options.out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    runs = list(options.experiments)
    metrics = {e: load_metrics(options.evaluate_dir, e) for e in runs}
    groups, means = report_seeds.by_experiment(runs, metrics)
    experiments = [members[0] for members in groups.values()]  # one run per experiment in the curve plots
    curves = {e: _optional_json(options.evaluate_dir / e / "pr_curves.json") for e in experiments}
    per_class = {e: _optional_json(options.evaluate_dir / e / "per_class_ap.json") for e in experiments}
    scalars = {e: training_scalars(options.train_dir, e) for e in experiments} if options.train_dir else {}
    options.out_dir.mkdir(parents=True, exist_ok=True)
    # every plot is written (Snakemake declares them); a panel without data stays empty and the summary says so
    plots = ["pr_curves.png", "per_class_ap.png", "loss_curves.png", "transfer.png"]
    teacher = _optional_json(options.teacher)
    dry_run = marks.is_dry_run(metrics)
    plot_pr_curves(experiments, curves, options.out_dir / plots[0], dry_run)
    plot_per_class(experiments, per_class, options.out_dir / plots[1], dry_run)
    plot_losses(experiments, scalars, options.out_dir / plots[2], dry_run)
    plot_transfer(list(groups), means, teacher, options.out_dir / plots[3], dry_run)
    missing = [e for e in experiments if not curves[e]] + [e for e in experiments if not scalars.get(e)]
    if missing:
        log.warning("no curves or training scalars for %s: their panels are empty", sorted(set(missing)))
    env = report_seeds.environment_lines(options.train_dir, runs)
    variants = ablation.parse_variants(options.variants)
    ablation_lines, ablation_csv = ablation.ablation_section(variants, groups, metrics)
    text = summary_markdown(
        runs, metrics, _optional_json(options.recall), options.bench_dir, teacher, plots, env,
        benchmarks_dir=options.benchmarks_dir, ablation_lines=ablation_lines,
    )  # fmt: skip
    released = published.released_lines(options.train_dir, runs, metrics)
    if released:
        text += "\n".join(["", "## Released checkpoints: published vs measured (percent)", "", *released, ""])
    if options.detect_dir is not None:
        text += "\n".join(["", "## Detection gallery", "", *gallery_lines(options.detect_dir, options.out_dir), ""])
    if options.val_annotations is not None:
        shown = val_gallery.write_gallery(
            options.val_annotations, options.val_images, options.evaluate_dir, experiments, options.num_base,
            options.out_dir, options.gallery_images, options.gallery_threshold,
        )  # fmt: skip
        text += "\n".join(["", "## Val gallery: ground truth | each experiment's detections", "", *shown])
    if dry_run:
        text = marks.mark_summary(text)
        log.warning("report: the metrics come from a dry run: the summary and the plots are marked %s", marks.MARK)
    with atomic.atomic_path(options.out_dir / "summary.md", suffix=".md") as tmp:
        Path(tmp).write_text(text)
    with atomic.atomic_path(options.out_dir / "summary.html", suffix=".html") as tmp:
        Path(tmp).write_text(summary_html(text, options.out_dir), encoding="utf-8")
    with atomic.atomic_path(options.out_dir / "front.html", suffix=".html") as tmp:
        Path(tmp).write_text(front_html(groups, metrics, options.out_dir / plots[3], dry_run), encoding="utf-8")
    with atomic.atomic_path(options.out_dir / "ablation.csv", suffix=".csv") as tmp:
        Path(tmp).write_text(ablation_csv, encoding="utf-8")
    log.info("report: %d runs of %d experiments, %d plots -> %s", len(runs), len(groups), len(plots), options.out_dir)
    print((marks.TABLE_NOTE + "\n\n" if dry_run else "") + metrics_table(runs, metrics))


COMMAND = Command("python -m pipeline.report", __doc__, ReportOptions, run)
build_parser, main = COMMAND.build_parser, COMMAND.main
