"""The reference's published figures of its released detectors, beside the figures measured here.

A run whose ``final.pth`` was converted from a released checkpoint (``meta["imported"]``, written by
``pipeline.released detector`` for ``train.import``) gets one row per published figure of its experiment:
published, measured, the difference and the file it came from. :data:`PUBLISHED` is the one home of the figures
(percent; keys are ``metrics.json`` keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.report.html import md_text
from pipeline.report.seeds import training_meta

#: experiment -> the released file, where the figures are published, and the figures (``metrics.json`` keys)
PUBLISHED: dict[str, dict] = {
    "oadp_ov_coco": {
        "checkpoint": "work_dirs/oadp_ov_coco/iter_32000.pth",
        "source": "reference README (LutingWang/OADP d641d28), Results, OV COCO: mAPN50",
        "metrics": {"novel_ap50": 31.3},
    },
    "oadp_ov_lvis_released": {
        "checkpoint": "work_dirs/oadp_ov_lvis/epoch_24.pth",
        "source": (
            "reference README at the release (LutingWang/OADP 3bb7ac8), OV LVIS: APr 20.7; its later README "
            "(d641d28) gives OD APr 20.6 and IS (mask) APr 19.9 for the same file"
        ),
        "metrics": {"apr": 20.7, "segm_apr": 19.9},
    },
}


def published_rows(experiment: str, measured: Mapping) -> list[tuple[str, float, float | None]]:
    """``(metric, published, measured)`` for every published figure of ``experiment`` (none when it has none)."""
    figures = PUBLISHED.get(experiment, {}).get("metrics", {})
    return [(key, value, measured.get(key)) for key, value in figures.items()]


def released_lines(train_dir: Path | None, runs: Sequence[str], metrics: Mapping[str, Mapping]) -> list[str]:
    """A table of the imported runs: their published figures next to the measured ones, and the file each came
    from; empty when no run was imported."""
    if train_dir is None:
        return []
    rows = []
    for run in runs:
        imported = training_meta(train_dir, run).get("imported")
        if not isinstance(imported, Mapping):
            continue
        checkpoint = str(imported.get("checkpoint", "?")).replace("\n", " ")
        shown_path = f"`{checkpoint}`" if "`" not in checkpoint else md_text(checkpoint)  # a code span is plain text
        source = f"{shown_path} (sha256 {md_text(str(imported.get('sha256', '?'))[:12])})"
        figures = published_rows(run, metrics[run])
        if not figures:
            rows.append(f"| {md_text(run)} | – | – | – | – | {source}, no published figure for this experiment |")
        for key, published, measured in figures:
            diff = "–" if measured is None else f"{measured - published:+.1f}"
            shown = "–" if measured is None else f"{measured:.1f}"
            rows.append(f"| {md_text(run)} | {key} | {published:.1f} | {shown} | {diff} | {source} |")
    if not rows:
        return []
    notes = [f"- {e}: {p['source']}." for e, p in PUBLISHED.items() if any(r.startswith(f"| {e} |") for r in rows)]
    header = ["| run | metric | published | measured | measured - published | released checkpoint |", "|---" * 6 + "|"]
    return header + rows + ([""] + notes if notes else [])
