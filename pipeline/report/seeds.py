"""Runs of one experiment over several training seeds, and the environment each training ran in (for the report).

An experiment ``E`` trains once with its config's own seed (run ``E``) and, for every extra seed N of the
workflow's ``train.seeds``, as run ``E+seedN`` (run names: :mod:`pipeline.core.runs`). The report groups a run
list into experiments, shows each experiment's mean and min–max of novel / base / all AP50 over its seeds, and
compares experiments by their means (:func:`mean_metrics`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from pipeline.core.environment import describe
from pipeline.core.runs import split_run
from pipeline.report.html import md_text

log = logging.getLogger(__name__)

SPREAD_COLUMNS = (("novel_ap50", "novel AP50"), ("base_ap50", "base AP50"), ("all_ap50", "all AP50"))


def group_runs(runs: Sequence[str]) -> dict[str, list[str]]:
    """Runs by experiment, experiments in order of first appearance; within one, the config-seed run first, then
    the seed runs in the order given."""
    groups: dict[str, list[str]] = {}
    for run in runs:
        experiment, seed = split_run(run)
        members = groups.setdefault(experiment, [])
        if run in members:
            continue
        if seed is None:
            members.insert(0, run)
        else:
            members.append(run)
    return groups


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def mean_metrics(runs: Sequence[dict]) -> dict:
    """The mean of several runs' metrics, key by key and into nested dicts (``open_ended``); a value missing or
    ``None`` in some runs is averaged over the others. One run: its metrics unchanged."""
    if len(runs) == 1:
        return runs[0]
    out: dict = {}
    for key in dict.fromkeys(k for m in runs for k in m):
        values = [m.get(key) for m in runs]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, dict) for v in present):
            out[key] = mean_metrics(present)
        elif present and all(_number(v) for v in present):
            out[key] = sum(present) / len(present)
        else:
            out[key] = present[0] if present else None
    return out


def by_experiment(runs: Sequence[str], metrics: dict[str, dict]) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """:func:`group_runs` of ``runs`` and each experiment's :func:`mean_metrics` over its runs."""
    groups = group_runs(runs)
    return groups, {e: mean_metrics([metrics[r] for r in members]) for e, members in groups.items()}


def _seed_label(run: str) -> str:
    seed = split_run(run)[1]
    return "config's" if seed is None else str(seed)


def _spread(values: list[float]) -> str:
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ({min(values):.1f}–{max(values):.1f})"


def spread_text(runs: Sequence[str], metrics: dict[str, dict], key: str) -> str:
    """``key`` over ``runs``: mean (min–max) to one decimal; one value: itself; none: ``–``."""
    return _spread([metrics[r][key] for r in runs if _number(metrics[r].get(key))])


def seed_lines(groups: dict[str, list[str]], metrics: dict[str, dict]) -> list[str]:
    """A table experiment x novel / base / all AP50: mean (min–max) over the seeds run; one seed: its value."""
    header = ["experiment", "seeds"] + [title for _, title in SPREAD_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for experiment, runs in groups.items():
        n = len(runs)
        row = [md_text(experiment), f"{n} seed{'s' if n > 1 else ''}: {', '.join(_seed_label(r) for r in runs)}"]
        for key, _ in SPREAD_COLUMNS:
            row.append(spread_text(runs, metrics, key))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def training_meta(train_dir: Path, run: str) -> dict:
    """The ``meta`` of ``<train_dir>/<run>/final.pth`` (pipeline.models.detector.checkpoint); ``{}`` when the file is
    missing or unreadable (the report then only lacks what it says)."""
    path = train_dir / run / "final.pth"
    if not path.is_file():
        return {}
    import torch

    try:  # memory-mapped: the weights are not read
        meta = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("meta", {})
    except Exception as err:  # an unreadable checkpoint only loses its lines of the report
        log.warning("%s: no meta read (%s)", path, err)
        return {}
    return meta if isinstance(meta, dict) else {}


def training_environment(train_dir: Path, run: str) -> dict | None:
    """The ``environment`` record in ``<train_dir>/<run>/final.pth`` (pipeline.train's meta); ``None`` when the
    file or the record is missing."""
    return training_meta(train_dir, run).get("environment")


def environment_lines(train_dir: Path | None, runs: Sequence[str]) -> list[str]:
    """The trainings' environments, runs with the same one on one line; a warning line when they differ."""
    if train_dir is None:
        return ["(no training folder given)"]
    by_env: dict[str, list[str]] = {}
    for run in runs:
        by_env.setdefault(describe(training_environment(train_dir, run)), []).append(run)
    lines = [f"- {', '.join(md_text(n) for n in names)}: {md_text(env)}" for env, names in by_env.items()]
    if len(by_env) > 1:
        lines.append(
            "- The trainings ran in different environments: kernels chosen by instruction set, thread count or "
            "library settings change the last bits of every step, which training amplifies (expect AP50 to differ)."
        )
    return lines + batch_lines(train_dir, runs)


def batch_lines(train_dir: Path, runs: Sequence[str]) -> list[str]:
    """The trainings' batches (``final.pth`` ``meta.batch``: GPUs, images per GPU, accumulation, effective batch
    beside the reference's), runs with the same batch on one line; none for runs without the record."""
    from pipeline.core.batching import describe_record

    by_batch: dict[str, list[str]] = {}
    for run in runs:
        record = training_meta(train_dir, run).get("batch")
        if record:
            by_batch.setdefault(describe_record(record), []).append(run)
    return [f"- batch of {', '.join(md_text(n) for n in names)}: {md_text(b)}" for b, names in by_batch.items()]
