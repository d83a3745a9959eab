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
    benchmarks_dir: Path | None = option(
        None, help="Snakemake's benchmark files of the run (<rule>/...tsv): per-stage wall and CPU time (input)"
    )
    bench_dir: Path | None = option(None, help="make bench's JSON files (results/bench), used when present")
    teacher: Path | None = option(None, help="teacher zero-shot JSON (input, optional)")
    detect_dir: Path | None = option(
        None, help="a pipeline.detect output folder (detections.json, pictures/): the gallery section (input)"
    )
    val_annotations: Path | None = option(
        None, help="val annotation file (all classes): the val gallery's images and ground truth (input)"
    )
    val_images: Path | None = option(None, help="image folder of --val-annotations (input)")
    num_base: int | None = option(None, help="base categories = ids below this (needed with --val-annotations)")
    gallery_images: int = option(6, help="val images in the gallery picture")
    gallery_threshold: float = option(
        0.0, help="lowest detection score drawn in the val gallery (top ones, as many as ground-truth boxes)"
    )
    variants: str | None = option(
        None,
        help="the config's variants as a JSON object {NAME: {from: E, options: {...}, description: ...}}: "
        "the ablation tables",
    )
    out_dir: Path = option(help="summary.md, summary.html, front.html, ablation.csv and plots (outputs)")

    def __post_init__(self):
        if self.val_annotations is not None and (self.val_images is None or self.num_base is None):
            raise ValueError("--val-annotations needs --val-images and --num-base")
