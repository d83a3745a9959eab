"""Stage ``report``: one summary of the run from stored results (nothing is recomputed).

Command::

    python -m pipeline.report --experiments NAME ... --evaluate-dir results/evaluate --train-dir results/train
        [--recall results/proposals/<dataset>/recall.json] [--bench-dir results/bench] [--teacher zeroshot.json]
        --out-dir results/report

Reads per experiment ``<evaluate-dir>/<name>/metrics.json`` (required), ``pr_curves.json`` and
``per_class_ap.json`` (optional), and the training scalars ``<train-dir>/<name>/<timestamp>/vis_data/scalars.json``
(the newest run that logged losses). Writes (atomically):

* ``summary.md``: one table runs x metrics (novel / base / all AP50, AP, LVIS AP / APr / APc / APf when
  present, open-ended accuracy), the spread over training seeds (runs ``E+seedN`` grouped with ``E``: mean and
  min–max AP50, ``pipeline.report.seeds``), proposal recall (AR@100 base / novel), the novel AP50 of each distilled
  experiment over its ``baseline_*`` (same suffix; means over the seeds), the CLIP teacher's zero-shot accuracy
  (``--teacher``), the OAKE throughput and disk figures and the train step-time ratio from the benchmark files when
  they exist, the numerics environment of every training (``final.pth`` meta), and the list of plots;
* ``pr_curves.png``: precision-recall at IoU 0.5, base and novel mean curves per experiment;
* ``per_class_ap.png``: AP50 per class, bars coloured base / novel, one panel per experiment;
* ``loss_curves.png``: total and per-branch training losses per experiment;
* ``transfer.png``: base and novel AP50 (means over the seeds) per experiment, with the teacher's zero-shot accuracy.

A missing optional file leaves its section out and says so; a missing or malformed metrics file is an error
naming it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from pipeline.core import atomic
from pipeline.core.options import Command
from pipeline.report import seeds as report_seeds
from pipeline.report.options import ReportOptions

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
LOSS_KEYS = ("loss", "loss_cls", "loss_clip_objects", "loss_clip_blocks", "loss_clip_global", "loss_block")


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
        row = [e] + [_fmt(metrics[e].get(k)) for k, _ in cols]
        if has_oe:
            oe = metrics[e].get("open_ended") or {}
            acc, niv = oe.get("accuracy"), oe.get("not_in_vocab_rate")
            row += [_fmt(acc), _fmt(niv)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _bench_lines(bench_dir: Path | None) -> list[str]:
    if bench_dir is None:
        return ["(no benchmark folder given)"]
    lines = []
    oake = _optional_json(bench_dir / "oake.json")
    if oake:
        tp = oake.get("throughput", {})
        lines.append(
            "OAKE extractor / bare forward throughput: "
            + ", ".join(f"{k} {v['ratio']:.2f} ({v['extractor_images_per_s']:.2f} img/s)" for k, v in tp.items())
            + f" [{oake.get('model', '')}, {oake.get('device', '')}]"
        )
        scale = oake.get("disk_at_scale", {})
        if scale:
            lines.append(
                "OAKE disk vs per-image files (1,000-image shards): "
                + ", ".join(f"{k} {v['ratio']:.3f}" for k, v in scale.items())
            )
    train = _optional_json(bench_dir / "train.json")
    if train:
        for run in train.get("runs", []):
            lines.append(
                f"Train step {run['config']} on {run['device']}: OADP {run['oadp']['median_s']:.2f} s vs plain "
                f"Faster R-CNN {run['plain_faster_rcnn']['median_s']:.2f} s (ratio {run['ratio']:.2f}, target "
                f"<= {run['target_ratio']}); peak memory {run['oadp']['peak_mib']:.0f} vs "
                f"{run['plain_faster_rcnn']['peak_mib']:.0f} MiB"
            )
    return [f"- {x}" for x in lines] or [f"(no benchmark files in {bench_dir}: `make bench` writes them)"]


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
            f"- {e}: novel AP50 {_fmt(m['novel_ap50'])} vs {_fmt(b['novel_ap50'])} "
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
        rows.append((f"scene objects, {name.replace('_', ' ')}", acc.get("vild", {})))
    lines = ["| test set | base | novel | all |", "|---|---|---|---|"]
    lines += [f"| {n} | {pct(a.get('base'))} | {pct(a.get('novel'))} | {pct(a.get('all'))} |" for n, a in rows]
    training = teacher.get("training", {})
    lines += [
        "",
        f"{teacher.get('clip_model', '?')}, {training.get('steps', '?')} steps of {training.get('batch_size', '?')}"
        f" captioned crops ({training.get('seconds', '?')} s), loss {training.get('loss_first') or 0:.2f} -> "
        f"{training.get('loss_last') or 0:.2f}; argmax over all {len(teacher.get('classes', []))} classes with "
        f"the ViLD-template text embeddings, chance {pct(zs.get('chance'))}.",
    ]
    pairs = [p for p in zs.get("similar_pairs", []) if isinstance(p, dict)][:3]
    if pairs:
        lines += [
            "",
            "Least separated classes (cosine of the held-out image centroids / of the text embeddings; near 1 = "
            "merged): "
            + "; ".join(f"{' vs '.join(p['classes'])} {p['image']:.2f} / {p['text']:.2f}" for p in pairs)
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
    effect = transfer_lines(list(groups), means)
    if effect:
        out += ["", "## Open-vocabulary transfer (novel AP50 over the baseline without distillation)", ""] + effect
    if teacher:
        out += ["", "## CLIP teacher (zero-shot, percent)", ""] + teacher_lines(teacher)
    out += ["", "## Benchmarks", ""] + _bench_lines(bench_dir)
    if environment:
        out += ["", "## Training environment (what decides the floating-point results)", "", *environment]
    out += ["", "## Plots", ""] + [f"- [{p}]({p})" for p in plots] + [""]
    return "\n".join(out)


def _save(fig, path: Path) -> None:
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def plot_pr_curves(experiments, curves: dict[str, dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, split in zip(axes, ("base", "novel"), strict=True):
        for i, e in enumerate(experiments):
            data = curves.get(e)
            block = (data or {}).get("coco") or (data or {}).get("lvis")
            mean = (block or {}).get("mean", {}).get(split)
            if mean is not None:
                ax.plot(data["recall"], mean, label=e, color=f"C{i}")
        ax.set(title=f"{split} classes (IoU 0.5)", xlabel="recall", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(loc="upper right", fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_per_class(experiments, per_class: dict[str, list], path: Path) -> None:
    import matplotlib.pyplot as plt

    n = max(1, len(experiments))
    fig, axes = plt.subplots(n, 1, figsize=(14, 3.4 * n), squeeze=False, layout="constrained")
    for ax, e in zip(axes[:, 0], experiments, strict=True):
        rows = [r for r in per_class.get(e) or [] if r.get("iou_type", "bbox") == "bbox"]
        dataset = rows[0]["dataset"] if rows else None
        rows = [r for r in rows if r.get("dataset") == dataset][:80]  # a readable number of bars
        names = [r["name"] for r in rows]
        values = [r["ap50"] if r["ap50"] is not None else 0.0 for r in rows]
        colours = ["tab:blue" if r["split"] == "base" else "tab:orange" for r in rows]
        ax.bar(range(len(rows)), values, color=colours)
        ax.set_xticks(range(len(rows)), names, rotation=70, ha="right", fontsize=7)
        ax.set(title=f"{e}: AP50 per class (blue base, orange novel)", ylabel="AP50", ylim=(0, 100))
    _save(fig, path)
    plt.close(fig)


def plot_transfer(experiments, metrics: dict[str, dict], teacher: dict | None, path: Path) -> None:
    """Novel and base AP50 (``metrics``: means over the seeds) side by side per experiment, with the teacher's
    zero-shot accuracy (held-out crops, base / novel) as reference lines when a teacher report is given."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * max(1, len(experiments)), 4), layout="constrained")
    x = range(len(experiments))
    for offset, key, colour, label in ((-0.2, "base_ap50", "tab:blue", "base AP50"),
                                        (0.2, "novel_ap50", "tab:orange", "novel AP50")):  # fmt: skip
        values = [metrics[e].get(key) or 0.0 for e in experiments]
        bars = ax.bar([i + offset for i in x], values, width=0.4, color=colour, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    zs = ((teacher or {}).get("zero_shot") or {}).get("crops", {}).get("vild", {})
    for key, style in (("base", "--"), ("novel", ":")):
        if zs.get(key) is not None:
            ax.axhline(100 * zs[key], color="grey", linestyle=style, label=f"teacher zero-shot acc., {key}")
    ax.set_xticks(list(x), experiments)
    ax.set(ylabel="percent", ylim=(0, 125), title="Open-vocabulary transfer: base vs novel AP50")
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    _save(fig, path)
    plt.close(fig)


def plot_losses(experiments, scalars: dict[str, list], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LOSS_KEYS), figsize=(3.2 * len(LOSS_KEYS), 3.2))
    for ax, key in zip(axes, LOSS_KEYS, strict=True):
        for i, e in enumerate(experiments):  # one colour per experiment in every panel
            rows = [r for r in scalars.get(e, []) if key in r]
            if rows:
                ax.plot([r["iter"] for r in rows], [r[key] for r in rows], label=e, color=f"C{i}")
        ax.set(title=key, xlabel="iteration")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def run(options: ReportOptions) -> None:
    """Write the report (``summary.md`` and the plots) into ``options.out_dir``."""
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
    plot_pr_curves(experiments, curves, options.out_dir / plots[0])
    plot_per_class(experiments, per_class, options.out_dir / plots[1])
    plot_losses(experiments, scalars, options.out_dir / plots[2])
    plot_transfer(list(groups), means, teacher, options.out_dir / plots[3])
    missing = [e for e in experiments if not curves[e]] + [e for e in experiments if not scalars.get(e)]
    if missing:
        log.warning("no curves or training scalars for %s: their panels are empty", sorted(set(missing)))
    env = report_seeds.environment_lines(options.train_dir, runs)
    text = summary_markdown(runs, metrics, _optional_json(options.recall), options.bench_dir, teacher, plots, env)
    with atomic.atomic_path(options.out_dir / "summary.md", suffix=".md") as tmp:
        Path(tmp).write_text(text)
    log.info("report: %d runs of %d experiments, %d plots -> %s", len(runs), len(groups), len(plots), options.out_dir)
    print(metrics_table(runs, metrics))


COMMAND = Command("python -m pipeline.report", __doc__, ReportOptions, run)
build_parser, main = COMMAND.build_parser, COMMAND.main
