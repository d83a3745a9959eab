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
    detect_dir: Path | None = option(
        None, help="a pipeline.detect output folder (detections.json, pictures/): the gallery section (input)"
    )
    val_annotations: Path | None = option(
        None, help="val annotation file (all classes): the val gallery's images and ground truth (input)"
    )
    val_images: Path | None = option(None, help="image folder of --val-annotations (input)")
    num_base: int | None = option(None, help="base categories = ids below this (needed with --val-annotations)")
    gallery_images: int = option(3, help="val images per gallery picture")
    gallery_threshold: float = option(
        0.0, help="lowest detection score drawn in the val gallery (top ones, as many as ground-truth boxes)"
    )
    out_dir: Path = option(help="summary.md and plots (outputs)")

    def __post_init__(self):
        if self.val_annotations is not None and (self.val_images is None or self.num_base is None):
            raise ValueError("--val-annotations needs --val-images and --num-base")
