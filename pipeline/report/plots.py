"""The report's plots, each written atomically as a PNG (marked DRY RUN when asked), sized for what they show.

* :func:`plot_pr_curves`: precision-recall at IoU 0.5, base and novel mean curves per experiment;
* :func:`plot_per_class`: AP50 per class, bars coloured base / novel, one panel per experiment; the figure grows
  with the class count (:func:`per_class_size`), and beyond :data:`MAX_BARS` classes a panel shows the top and
  bottom :data:`MAX_BARS` // 2 classes by AP50;
* :func:`plot_losses`: one panel per loss term, each with its y label and its own legend;
* :func:`plot_transfer`: base / novel AP50 per experiment (left axis, percent AP50) and, in a second panel, the
  open-ended crop-classification accuracy and the teacher's zero-shot accuracy (percent accuracy).

Every name (experiment, class) is drawn as plain text (:func:`plain`: a ``$`` never starts mathtext). Every function
returns the matplotlib figure (closed; its artists can still be inspected).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.core import atomic
from pipeline.report import marks

LOSS_KEYS = ("loss", "loss_cls", "loss_clip_objects", "loss_clip_blocks", "loss_clip_global", "loss_block")


def plain(name: object) -> str:
    """``name`` as matplotlib shows it literally: every ``$`` escaped (no mathtext), a leading ``_`` (which hides a
    legend entry) kept visible by a zero-width space."""
    text = str(name).replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text


def _save(fig, path: Path, dry_run: bool = False) -> None:
    if dry_run:
        marks.mark_figure(fig)
    with atomic.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def plot_pr_curves(experiments, curves: dict[str, dict], path: Path, dry_run: bool = False):
    """Precision over recall at IoU 0.5: base and novel mean curves, one line per experiment."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, split in zip(axes, ("base", "novel"), strict=True):
        for i, e in enumerate(experiments):
            data = curves.get(e)
            block = (data or {}).get("coco") or (data or {}).get("lvis")
            mean = (block or {}).get("mean", {}).get(split)
            if mean is not None:
                ax.plot(data["recall"], mean, label=plain(e), color=f"C{i}")
        ax.set(title=f"{split} classes (IoU 0.5)", xlabel="recall", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(loc="upper right", fontsize=8)
    _save(fig, path, dry_run)
    plt.close(fig)
    return fig


MAX_BARS = 60


def per_class_size(num_classes: int, num_panels: int) -> tuple[float, float]:
    """Figure (width, height) in inches: 0.28 in per bar (at least 8 in), 3.6 in per panel."""
    return max(8.0, 1.5 + 0.28 * min(num_classes, MAX_BARS)), 3.6 * max(1, num_panels)


def plot_per_class(experiments, per_class: dict[str, list], path: Path, dry_run: bool = False):
    """AP50 per class of every experiment; beyond :data:`MAX_BARS` classes the top and bottom halves by AP50."""
    import matplotlib.pyplot as plt

    panels = {}
    for e in experiments:
        rows = [r for r in per_class.get(e) or [] if r.get("iou_type", "bbox") == "bbox"]
        dataset = rows[0]["dataset"] if rows else None
        panels[e] = [r for r in rows if r.get("dataset") == dataset]
    most = max((len(rows) for rows in panels.values()), default=0)
    fig, axes = plt.subplots(
        max(1, len(experiments)), 1, figsize=per_class_size(most, len(experiments)), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for ax, e in zip(axes[:, 0], experiments, strict=True):
        rows, title = panels[e], f"{plain(e)}: AP50 per class (blue base, orange novel)"
        if len(rows) > MAX_BARS:
            ranked = sorted(rows, key=lambda r: -(r["ap50"] or 0.0))
            rows = ranked[: MAX_BARS // 2] + ranked[-(MAX_BARS // 2) :]
            title += f", top and bottom {MAX_BARS // 2} of {len(ranked)} classes"
        values = [r["ap50"] if r["ap50"] is not None else 0.0 for r in rows]
        colours = ["tab:blue" if r["split"] == "base" else "tab:orange" for r in rows]
        ax.bar(range(len(rows)), values, color=colours)
        ax.set_xticks(range(len(rows)), [plain(r["name"]) for r in rows], rotation=60, ha="right", fontsize=9)
        ax.set(title=title, ylabel="AP50 (percent)", ylim=(0, 100), xlim=(-0.6, max(len(rows), 1) - 0.4))
        ax.grid(axis="y", alpha=0.3)
    _save(fig, path, dry_run)
    plt.close(fig)
    return fig


def plot_transfer(experiments, metrics: dict[str, dict], teacher: dict | None, path: Path, dry_run: bool = False):
    """Two panels per experiment: base and novel detection AP50 (``metrics``: means over the seeds), and the
    ground-truth-box classification accuracy (``open_ended`` base / novel accuracy) beside the teacher's zero-shot
    crop accuracy (dashed / dotted lines) when a teacher report is given. AP and accuracy never share an axis."""
    import matplotlib.pyplot as plt

    n = max(1, len(experiments))
    fig, (det, cls) = plt.subplots(1, 2, figsize=(2 * (2.2 + 1.3 * n), 4), layout="constrained")
    x = list(range(len(experiments)))
    for offset, key, colour, label in ((-0.2, "base", "tab:blue", "base"), (0.2, "novel", "tab:orange", "novel")):
        values = [metrics[e].get(f"{key}_ap50") or 0.0 for e in experiments]
        bars = det.bar([i + offset for i in x], values, width=0.4, color=colour, label=f"{label} AP50")
        det.bar_label(bars, fmt="%.1f", fontsize=8)
        accs = [((metrics[e].get("open_ended") or {}).get(f"{key}_accuracy")) for e in experiments]
        bars = cls.bar([i + offset for i in x], [a or 0.0 for a in accs], width=0.4, color=colour,
                       label=f"{label} boxes classified right")  # fmt: skip
        cls.bar_label(bars, labels=["–" if a is None else f"{a:.1f}" for a in accs], fontsize=8)
    zs = ((teacher or {}).get("zero_shot") or {}).get("crops", {}).get("vild", {})
    for key, style in (("base", "--"), ("novel", ":")):
        if zs.get(key) is not None:
            cls.axhline(100 * zs[key], color="grey", linestyle=style, label=f"teacher zero-shot, {key} crops")
    det.set(ylabel="detection AP50 (percent)", ylim=(0, 110), title="Detection: base vs novel AP50")
    cls.set(ylabel="classification accuracy (percent)", ylim=(0, 110),
            title="Ground-truth boxes classified (all classes)")  # fmt: skip
    for ax in (det, cls):
        ax.set_xticks(x, [plain(e) for e in experiments])
        ax.legend(fontsize=8, loc="upper center", ncol=2)
    _save(fig, path, dry_run)
    plt.close(fig)
    return fig


def plot_losses(experiments, scalars: dict[str, list], path: Path, dry_run: bool = False):
    """One panel per term of :data:`LOSS_KEYS`: its value per iteration for every experiment (one colour each),
    with a y label and a legend in every panel (or "no data" where no experiment logged the term)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), layout="constrained")
    for ax, key in zip(axes.flat, LOSS_KEYS, strict=True):
        for i, e in enumerate(experiments):
            rows = [r for r in scalars.get(e, []) if key in r]
            if rows:
                ax.plot([r["iter"] for r in rows], [r[key] for r in rows], label=plain(e), color=f"C{i}")
        ax.set(title=key, xlabel="iteration", ylabel=f"{key} (training loss)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    _save(fig, path, dry_run)
    plt.close(fig)
    return fig
