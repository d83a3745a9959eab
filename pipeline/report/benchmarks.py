"""The report's benchmark section: what each stage of the run cost, and the figures of ``make bench``.

:func:`run_cost_lines` reads the ``benchmark:`` files Snakemake wrote for the run's jobs
(``<benchmarks dir>/<rule>[/<wildcards>...].tsv``, tab-separated with a header: ``s`` the wall time in seconds,
``cpu_time`` seconds, ``max_rss`` MiB, one line per repetition) and gives one table row per stage (the first path
component: the rule family), the slowest first: jobs, wall and CPU seconds summed over its jobs, its slowest job and
the largest resident memory. :func:`bench_lines` gives the figures of ``make bench`` (``results/bench/*.json``:
OAKE throughput and disk, train step time) when they exist.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import atomic
from pipeline.report.html import md_text


def _float(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass
class StageCost:
    jobs: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_mib: float | None = None
    slowest: tuple[float, str] = (-1.0, "")
    unreadable: list[str] = field(default_factory=list)


def read_benchmarks(folder: Path) -> dict[str, StageCost]:
    """Stage -> its jobs' summed cost, from every ``*.tsv`` under ``folder`` (a file without a readable ``s`` column
    is listed as unreadable in its stage)."""
    stages: dict[str, StageCost] = {}
    for path in sorted(folder.rglob("*.tsv")):
        rel = path.relative_to(folder)
        stage = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        cost = stages.setdefault(stage, StageCost())
        try:
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
        except (OSError, UnicodeDecodeError, csv.Error):
            rows = []
        walls = [w for w in (_float(r.get("s")) for r in rows) if w is not None]
        if not walls:
            cost.unreadable.append(rel.as_posix())
            continue
        wall = sum(walls) / len(walls)  # repetitions: their mean
        cpus = [c for c in (_float(r.get("cpu_time")) for r in rows) if c is not None]
        rss = [m for m in (_float(r.get("max_rss")) for r in rows) if m is not None]
        cost.jobs += 1
        cost.wall_s += wall
        cost.cpu_s += sum(cpus) / len(cpus) if cpus else 0.0
        if rss:
            cost.max_rss_mib = max(cost.max_rss_mib or 0.0, max(rss))
        cost.slowest = max(cost.slowest, (wall, rel.with_suffix("").as_posix()))
    return stages


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {s:02d} s"


def run_cost_lines(folder: Path | None) -> list[str]:
    """A markdown table stage x (jobs, wall, CPU, slowest job, peak memory), the slowest stage first, and the
    total; a line saying why there is none when ``folder`` is missing or holds no benchmark file."""
    if folder is None:
        return ["(no benchmarks folder given)"]
    stages = read_benchmarks(folder) if folder.is_dir() else {}
    if not stages:
        return [f"(no benchmark files in {md_text(folder)}: the jobs of this run have not written any yet)"]
    lines = [
        "| stage | jobs | wall time | CPU time | slowest job | peak memory (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for stage, c in sorted(stages.items(), key=lambda kv: -kv[1].wall_s):
        rss = "–" if c.max_rss_mib is None else f"{c.max_rss_mib:.0f}"
        slowest = f"{md_text(c.slowest[1])} ({_duration(c.slowest[0])})" if c.jobs else "–"
        lines.append(
            f"| {md_text(stage)} | {c.jobs} | {_duration(c.wall_s)} | {_duration(c.cpu_s)} | {slowest} | {rss} |"
        )
    wall, cpu = sum(c.wall_s for c in stages.values()), sum(c.cpu_s for c in stages.values())
    lines += [
        "",
        f"Summed over {sum(c.jobs for c in stages.values())} jobs: {_duration(wall)} wall, {_duration(cpu)} CPU "
        "(jobs that ran in parallel overlap; a job that did not run in this invocation keeps its earlier file). "
        f"From Snakemake's `benchmark:` files in {md_text(folder)}.",
    ]
    bad = [p for c in stages.values() for p in c.unreadable]
    if bad:
        lines.append(f"Unreadable benchmark files: {', '.join(md_text(p) for p in bad)}.")
    return lines


def bench_lines(bench_dir: Path | None) -> list[str]:
    """The figures of ``make bench`` (``oake.json``, ``train.json`` in ``bench_dir``) as list lines; empty when
    there are none."""
    if bench_dir is None:
        return []
    lines = []
    oake = atomic.read_json(bench_dir / "oake.json") if (bench_dir / "oake.json").is_file() else None
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
    train = atomic.read_json(bench_dir / "train.json") if (bench_dir / "train.json").is_file() else None
    if train:
        for run in train.get("runs", []):
            lines.append(
                f"Train step {run['config']} on {run['device']}: OADP {run['oadp']['median_s']:.2f} s vs plain "
                f"Faster R-CNN {run['plain_faster_rcnn']['median_s']:.2f} s (ratio {run['ratio']:.2f}, target "
                f"<= {run['target_ratio']}); peak memory {run['oadp']['peak_mib']:.0f} vs "
                f"{run['plain_faster_rcnn']['peak_mib']:.0f} MiB"
            )
    return [f"- {x}" for x in lines]
