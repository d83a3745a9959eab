"""The ablation table: the variants of an experiment beside the full method, over seeds.

A variant (the config's ``variants``: ``NAME: {from: BASE, options: {dotted.key: value}, oake: {...},
description: ...}``) is a run made from a base experiment by overrides. :func:`ablation_groups` follows each
variant's ``from`` chain to the experiment it is made from (the *full method*, an experiment of its own) and groups
the variants under it. :func:`ablation_rows` gives, per group, one row for the full method and one per variant:
what the row changes, each metric as mean and min–max over the row's seed runs, and the difference to the full
method with its spread: over paired seeds (``V+seedN`` minus ``E+seedN``, the config's seed paired with the
config's seed) when both rows ran the same seeds, else the difference of the means with the widest range
(min of the variant minus max of the full method .. max minus min). A difference whose spread does not include 0
is marked ``*``: it exceeds the seed noise seen. Metrics: novel / base / all AP50 (OV-COCO style), or APr / APc / APf
/ AP when the full method has no novel AP50 (OV-LVIS).

The same rows become the markdown table of ``summary.md`` (and so ``summary.html``) and ``ablation.csv``; for the
full method of a real preset the published figure stands beside the measured one where
:mod:`pipeline.report.published` has it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.runs import split_run
from pipeline.report.html import md_text
from pipeline.report.published import PUBLISHED

COCO_KEYS = (("novel_ap50", "novel AP50"), ("base_ap50", "base AP50"), ("all_ap50", "all AP50"))
LVIS_KEYS = (("apr", "APr"), ("apc", "APc"), ("apf", "APf"), ("ap", "AP"))


def parse_variants(text: str | None) -> dict[str, dict]:
    """The config's ``variants`` as given on the command line (a JSON object); ValueError naming the option."""
    if not text:
        return {}
    try:
        variants = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--variants: not a JSON object ({err})") from None
    if not isinstance(variants, dict) or not all(isinstance(v, dict) and v.get("from") for v in variants.values()):
        raise ValueError("--variants: expected {NAME: {from: EXPERIMENT, ...}, ...} (the config's variants)")
    return variants


def changes(variant: Mapping) -> str:
    """What a variant changes: its description, else its overrides as ``key=value`` (``oake.key=value``)."""
    if variant.get("description"):
        return str(variant["description"])
    parts = [f"{k}={json.dumps(v)}" for k, v in (variant.get("options") or {}).items()]
    parts += [f"oake.{k}={json.dumps(v)}" for k, v in (variant.get("oake") or {}).items()]
    return "; ".join(parts) or "(no override)"


def _experiment_name(base: str) -> str:
    """A variant's ``from`` as the name of its run: a config file's stem (``my/oadp.py`` -> ``oadp``)."""
    return Path(base).stem if base.endswith(".py") else base


def ablation_groups(variants: Mapping[str, Mapping], experiments: Sequence[str]) -> dict[str, list[str]]:
    """``{full method: [variants made from it, in the order given]}`` for the variants among ``experiments``
    whose ``from`` chain reaches an experiment that is not a variant (itself among ``experiments``)."""
    present = set(experiments)
    groups: dict[str, list[str]] = {}
    for name in experiments:
        if name not in variants:
            continue
        root, seen = name, {name}
        while root in variants:
            root = _experiment_name(str(variants[root]["from"]))
            if root in seen:
                break
            seen.add(root)
        if root in present and root not in variants:
            groups.setdefault(root, []).append(name)
    return groups


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v


@dataclass(frozen=True)
class Cell:
    mean: float | None
    low: float | None
    high: float | None
    beyond_noise: bool = False

    def text(self, signed: bool = False) -> str:
        if self.mean is None:
            return "–"
        f = "{:+.1f}" if signed else "{:.1f}"
        out = f.format(self.mean)
        if self.low is not None and self.low != self.high:
            out += f" ({f.format(self.low)}–{f.format(self.high)})"
        return out + (" *" if self.beyond_noise else "")


def _spread(values: list[float]) -> Cell:
    if not values:
        return Cell(None, None, None)
    return Cell(sum(values) / len(values), min(values), max(values))


def _difference(variant: dict[int | None, float], full: dict[int | None, float]) -> Cell:
    """``variant`` and ``full``: metric by seed (None: the config's seed)."""
    if not variant or not full:
        return Cell(None, None, None)
    if set(variant) == set(full):
        d = [variant[s] - full[s] for s in variant]
        low, high = min(d), max(d)
        mean = sum(d) / len(d)
    else:
        v, f = list(variant.values()), list(full.values())
        mean = sum(v) / len(v) - sum(f) / len(f)
        low, high = min(v) - max(f), max(v) - min(f)
    if len(variant) == 1 and len(full) == 1:  # one seed each: no noise seen, nothing to exceed
        return Cell(mean, None, None)
    return Cell(mean, low, high, beyond_noise=low > 0 or high < 0)


def _by_seed(runs: Sequence[str], metrics: Mapping[str, Mapping], key: str) -> dict[int | None, float]:
    return {split_run(r)[1]: metrics[r][key] for r in runs if _number(metrics[r].get(key))}


@dataclass(frozen=True)
class Row:
    name: str
    change: str
    seeds: int
    values: list[Cell]
    differences: list[Cell]
    published: str


def metric_keys(full_metrics: Mapping) -> tuple[tuple[str, str], ...]:
    """AP50 columns when the full method has a novel AP50, else the LVIS ones."""
    return COCO_KEYS if _number(full_metrics.get("novel_ap50")) else LVIS_KEYS


def ablation_rows(
    full: str,
    variant_names: Sequence[str],
    variants: Mapping[str, Mapping],
    runs_of: Mapping[str, Sequence[str]],
    metrics: Mapping[str, Mapping],
) -> tuple[tuple[tuple[str, str], ...], list[Row]]:
    """The columns and the rows of one ablation: ``full`` first, then each variant. ``runs_of``: experiment ->
    its runs (``E`` and ``E+seedN``), ``metrics``: run -> metrics.json."""
    keys = metric_keys(metrics[runs_of[full][0]])
    full_by_seed = {k: _by_seed(runs_of[full], metrics, k) for k, _ in keys}
    published = PUBLISHED.get(full, {}).get("metrics", {})
    rows = []
    for name in [full, *variant_names]:
        runs = runs_of[name]
        by_seed = {k: _by_seed(runs, metrics, k) for k, _ in keys}
        values = [_spread(list(by_seed[k].values())) for k, _ in keys]
        diffs = [Cell(None, None, None) if name == full else _difference(by_seed[k], full_by_seed[k]) for k, _ in keys]
        if name == full:
            shown = [f"{title} {published[k]:.1f}" for k, title in keys if k in published]
            pub = "; ".join(shown) + f" ({PUBLISHED[full]['source']})" if shown else "–"
        else:
            pub = "–"
        change = "full method" if name == full else changes(variants[name])
        rows.append(Row(name, change, len(runs), values, diffs, pub))
    return keys, rows


def markdown_lines(full: str, keys, rows: Sequence[Row]) -> list[str]:
    """One markdown table: run, what it changes, seeds, then per metric its value and its difference to ``full``."""
    header = ["run", "changes", "seeds"]
    for _, title in keys:
        header += [title, f"Δ {title}"]
    header.append("published")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [md_text(r.name), md_text(r.change), str(r.seeds)]
        for v, d in zip(r.values, r.differences, strict=True):
            cells += [v.text(), "" if r.name == full else d.text(signed=True)]
        cells.append(md_text(r.published))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def csv_text(tables: Sequence[tuple[str, tuple, Sequence[Row]]]) -> str:
    """``ablation.csv``: one line per row of every ablation: full method, run, changes, seeds, and per metric its
    mean, min, max and the difference's mean, min, max (empty where none)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["full_method", "run", "changes", "seeds", "metric", "mean", "min", "max", "diff_mean", "diff_min",
                     "diff_max", "diff_beyond_seed_noise"])  # fmt: skip
    for full, keys, rows in tables:
        for r in rows:
            for (key, _), v, d in zip(keys, r.values, r.differences, strict=True):
                writer.writerow(
                    [full, r.name, r.change, r.seeds, key, *(_csv(x) for x in (v.mean, v.low, v.high)),
                     *(_csv(x) for x in (d.mean, d.low, d.high)), "" if d.mean is None else int(d.beyond_noise)]
                )  # fmt: skip
    return out.getvalue()


def _csv(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def ablation_section(
    variants: Mapping[str, Mapping], groups: Mapping[str, Sequence[str]], metrics: Mapping[str, Mapping]
) -> tuple[list[str], str]:
    """The summary's ablation section (markdown lines; empty without variants) and ``ablation.csv``'s text.
    ``groups``: experiment -> its runs (:func:`pipeline.report.seeds.group_runs`)."""
    tables = []
    lines: list[str] = []
    for full, names in ablation_groups(variants, list(groups)).items():
        keys, rows = ablation_rows(full, names, variants, groups, metrics)
        tables.append((full, keys, rows))
        lines += [f"### {md_text(full)} and its variants", "", *markdown_lines(full, keys, rows), ""]
    if lines:
        lines += [
            "Each value: mean (min–max) over the row's seeds, percent. Δ: the row minus the full method, over paired "
            "seeds when both ran the same ones (else the difference of the means, with the widest range); `*` marks "
            "a difference whose whole range lies on one side of 0, i.e. beyond the seed noise seen. A hint, not a "
            "test: with n paired seeds, noise alone puts every difference on one side of 0 in 2^(1-n) of cases "
            "(1 in 4 for three seeds). The paper's "
            "ablation rows are not in the reference notes this project follows (OADP_METHOD.md, section 10), so "
            "only the full method's published figure is shown, for the released configs.",
        ]
    return lines, csv_text(tables)
