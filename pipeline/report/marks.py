"""The DRY RUN marks of the report: a report built from a dry run's metrics cannot be mistaken for a result.

When any ``metrics.json`` the report reads says ``"dry_run": true`` (``pipeline.evaluate --dry-run``), the
summary's title says DRY RUN, a warning line stands above every table (every block of lines starting with ``|``)
and every figure gets a DRY RUN title above its panels.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.core import dry_run as dry

MARK = "DRY RUN"
TABLE_NOTE = f"**{MARK}: not results** (every stage shrunk to a few images and iterations)"
FIGURE_TITLE = f"{MARK}: not results"


def is_dry_run(metrics: Mapping[str, Mapping]) -> bool:
    """Whether any run's metrics (``{run: metrics.json}``) come from a dry run."""
    return any(m.get("dry_run") is True for m in metrics.values())


def mark_summary(markdown: str) -> str:
    """``markdown`` with DRY RUN in its first ``# `` title, the warning :data:`pipeline.core.dry_run.WARNING` under
    it, and :data:`TABLE_NOTE` on its own line above every table."""
    out: list[str] = []
    titled = False
    for line in markdown.split("\n"):
        if not titled and line.startswith("# "):
            out += [f"{line}: {MARK}", "", f"> {dry.WARNING}."]
            titled = True
            continue
        if line.startswith("|") and not (out and out[-1].startswith("|")):
            out += [TABLE_NOTE, ""] if not out or out[-1] == "" else ["", TABLE_NOTE, ""]
        out.append(line)
    if not titled:
        out = [f"# {MARK}", "", f"> {dry.WARNING}.", "", *out]
    return "\n".join(out)


def mark_figure(fig) -> None:
    """Put :data:`FIGURE_TITLE` above the panels of the matplotlib figure ``fig`` (red, bold)."""
    if fig.get_layout_engine() is None:  # no layout engine places it: just above the axes, kept by bbox "tight"
        fig.suptitle(FIGURE_TITLE, color="red", fontweight="bold", y=1.0, va="bottom")
    else:
        fig.suptitle(FIGURE_TITLE, color="red", fontweight="bold")
