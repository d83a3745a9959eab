"""``front.html``: the headline of the run as an HTML fragment, the landing page of ``snakemake --report``.

The workflow description (``workflow/report/workflow.rst``) includes it as raw HTML, so the report opens on the
numbers: one row per experiment with novel / base / all AP50 and, where evaluated, APr, each the mean (min–max)
over the experiment's seed runs, and the transfer plot embedded as a data URI (as wide as the page's text column;
a click shows it large, above the rule graph). Every name is HTML-escaped.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.report.html import embedded_img
from pipeline.report.seeds import spread_text

HEADLINE = (("novel_ap50", "novel AP50"), ("base_ap50", "base AP50"), ("all_ap50", "all AP50"), ("apr", "APr"))
STYLE = (
    "table.headline{border-collapse:collapse;margin:.5em 0}"
    "table.headline th,table.headline td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "table.headline th:first-child,table.headline td:first-child{text-align:left}"
    ".zoom input{display:none}.zoom img{max-width:100%;cursor:zoom-in}"
    ".zoom input:checked+img{max-width:none;width:min(1100px,90vw);position:relative;z-index:10;background:#fff;"
    "box-shadow:0 0 12px #888;cursor:zoom-out}"
)


def front_html(
    groups: Mapping[str, Sequence[str]], metrics: Mapping[str, Mapping], transfer_png: Path | None, dry_run: bool
) -> str:
    """The fragment: a title line, the headline table (``groups``: experiment -> its runs; ``metrics``: run ->
    metrics.json) and the transfer plot when ``transfer_png`` exists."""
    keys = [(k, t) for k, t in HEADLINE if any(metrics[r].get(k) is not None for rs in groups.values() for r in rs)]
    head = "".join(f"<th>{t}</th>" for _, t in keys)
    rows = []
    for experiment, runs in groups.items():
        cells = "".join(f"<td>{html.escape(spread_text(runs, metrics, k))}</td>" for k, _ in keys)
        rows.append(f"<tr><td>{html.escape(experiment)}</td><td>{len(runs)}</td>{cells}</tr>")
    note = (
        '<p style="color:#b00;font-weight:bold">DRY RUN: every stage shrunk to a few images and iterations; these '
        "are not results.</p>"
        if dry_run
        else ""
    )
    plot = ""
    if transfer_png is not None and transfer_png.is_file():
        plot = f"<p>{embedded_img(transfer_png, 'transfer: base and novel AP50 per experiment')}</p>"
    return (
        f"<style>{STYLE}</style><h2>Results</h2>{note}"
        f'<table class="headline"><tr><th>experiment</th><th>seeds</th>{head}</tr>{"".join(rows)}</table>'
        "<p>Percent; mean (min–max) over the experiment's seed runs. novel AP50 is the OV-COCO headline, APr the "
        "OV-LVIS one. The full summary (every table, the galleries) is <b>summary.html</b> in the Summary "
        "category.</p>"
        f"{plot}\n"
    )
