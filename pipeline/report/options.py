"""Options of ``python -m pipeline.report``: the frozen dataclass its command-line parser is built from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.core.options import option


@dataclass(frozen=True, kw_only=True)
class ReportOptions:
    experiments: tuple[str, ...] = option(help="runs: experiments E and seed runs E+seedN", nargs="+")
    evaluate_dir: Path = option(Path("results/evaluate"), help="metrics per experiment (input)")
    train_dir: Path | None = option(None, help="training work dirs, for the loss curves (input)")
    recall: Path | None = option(None, help="proposal recall.json (input)")
    bench_dir: Path | None = option(None, help="benchmark JSON files, used when present")
    teacher: Path | None = option(None, help="teacher zero-shot JSON (input, optional)")
    out_dir: Path = option(help="summary.md and plots (outputs)")
