"""Experiments are configs: what a detector run is, and what it reads, from its resolved mmdet config.

An experiment of the workflow is one of

* a shipped config name: ``oadp_ov_coco`` is ``configs/oadp_ov_coco.py``;
* the path of a user's mmdet config file (``.py``, relative to the working directory) that inherits from the shipped
  ones through ``_base_``; the experiment is named by the file's stem (``my/oadp.py`` -> ``oadp``);
* a variant (config key ``variants``): ``NAME: {from: BASE, options: {dotted.key: value}}``, where BASE is any of
  the above or another variant, and ``options`` are mmengine overrides (as ``--cfg-options``) applied after the
  base's own, e.g. ``{model.roi_head.block_head: null}`` removes the block head; ``oake`` are its own OAKE
  extraction settings (the workflow names the cache folder they make).

What a run reads follows from its resolved config (:func:`reads`), never from its name: the prompt kinds of its
text classifiers (``prompts``: vild, ml, detpro) and the OAKE caches its distillation heads learn from (the object
head -> objects, the block head -> blocks, the global head -> globals). Only ``mmengine.config`` is imported (no
torch): the workflow resolves every experiment once while it plans.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.runs import check_name
from pipeline.models.detector.config import BRANCH_CACHES, CONFIG_DIR, available, branches, prompt_kinds

CACHE_ORDER = ("globals", "blocks", "objects")


@dataclass(frozen=True)
class Experiment:
    """One experiment, resolved.

    ``config``: the shipped config name or the path of the user's file; ``options``: the dotted-key overrides on it,
    in the order applied (a variant's chain, base first); ``prompts``: prompt kinds its classifiers read, sorted;
    ``caches``: OAKE kinds its heads distil from, in :data:`CACHE_ORDER`; ``oake``: a variant's extraction settings
    (``{}``: the configured extraction); ``description``: what a variant changes, in its author's words.
    """

    name: str
    config: str
    options: tuple[tuple[str, Any], ...] = ()
    prompts: tuple[str, ...] = ()
    caches: tuple[str, ...] = ()
    oake: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    base: str | None = None  # the experiment a variant is made from

    @property
    def option_dict(self) -> dict[str, Any]:
        """The overrides as one mapping of dotted keys (nested mappings flattened; a later value of a key wins)."""
        out: dict[str, Any] = {}
        for key, value in self.options:
            out.update(flatten({key: value}))
        return out

    def cli_options(self) -> list[str]:
        """The overrides as ``--cfg-options`` words ``key=value`` (nested mappings flattened into dotted keys;
        ``None`` as ``None``, which mmengine's DictAction reads back as None)."""
        return [f"{k}={_cli_value(v)}" for k, v in self.option_dict.items()]


def _cli_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_cli_value(v) for v in value) + "]"
    return str(value)


def flatten(options: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys for nested mappings: ``{"a": {"b": 1}, "c.d": None}`` -> ``{"a.b": 1, "c.d": None}``."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def is_path(entry: str) -> bool:
    """An ``experiments`` entry that names a user's config file (ends in ``.py``) rather than a shipped config."""
    return str(entry).endswith(".py")


def entry_name(entry: str) -> str:
    """The experiment name of an ``experiments`` entry: a shipped name as it is, a file by its stem."""
    return Path(entry).stem if is_path(entry) else entry


def load(config: str, options: Mapping[str, Any] | None = None, *, key: str = "experiments"):
    """The mmengine ``Config`` of a shipped name or a config file with ``options`` merged (nothing filled in).
    Errors name the config key and the file."""
    from mmengine.config import Config

    if is_path(config):
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"config key '{key}': no such detector config file: {config} (relative to {Path.cwd()})")
    else:
        path = CONFIG_DIR / f"{config}.py"
        if not path.is_file():
            close = difflib.get_close_matches(config, available(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"config key '{key}': unknown experiment {config!r}{hint} (shipped configs in {CONFIG_DIR}: "
                f"{available()}, or give the path of your own .py config file)"
            )
    try:
        cfg = Config.fromfile(str(path), import_custom_modules=False)
    except Exception as err:  # mmengine raises whatever the file's code or its _base_ chain raises
        raise ValueError(f"config key '{key}': detector config {path} cannot be read: {err}") from None
    if options:
        try:
            cfg.merge_from_dict(dict(options))
        except Exception as err:
            raise ValueError(f"config key '{key}': options {dict(options)} do not apply to {path}: {err}") from None
    return cfg


def reads(cfg, *, key: str = "experiments") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(prompt kinds, OAKE cache kinds)`` a resolved config reads: its text classifiers' ``prompts`` and the
    caches of its distillation heads (:data:`~pipeline.models.detector.config.BRANCH_CACHES`)."""
    model = cfg.get("model") or {}
    if not model.get("roi_head"):
        raise ValueError(f"config key '{key}': the detector config has no model.roi_head (not an OADP detector)")
    caches = {BRANCH_CACHES[b] for b in branches(cfg)}
    return tuple(sorted(prompt_kinds(cfg))), tuple(k for k in CACHE_ORDER if k in caches)


def _definitions(experiments: Sequence[str], variants: Mapping[str, Mapping]) -> dict[str, dict]:
    """Every experiment by name: ``{config, options (list of mappings, base first), oake, description, base}``;
    variant chains followed to their config. Names checked, duplicates and cycles refused."""
    defs: dict[str, dict] = {}
    for i, entry in enumerate(experiments):
        name = check_name(entry_name(entry), f"experiments[{i}]")
        if name in defs:
            raise ValueError(f"config key 'experiments': {name!r} is named twice ({defs[name]['config']}, {entry})")
        defs[name] = {"config": entry, "options": [], "oake": {}, "description": "", "base": None}
    for name in variants:
        check_name(name, "variants")
        if name in defs:
            raise ValueError(f"config key 'variants.{name}': {name!r} is also in experiments (a run has one name)")

    def resolve(name: str, chain: tuple[str, ...]) -> dict:
        if name in defs:
            return defs[name]
        variant = variants[name]
        key = f"variants.{name}"
        if not isinstance(variant, Mapping) or not variant.get("from"):
            raise ValueError(f"config key '{key}': needs 'from', the experiment it is made from")
        base = str(variant["from"])
        if base in chain:
            raise ValueError(f"config key '{key}': variants made from each other: {' -> '.join(chain + (base,))}")
        if base in variants:
            parent = resolve(base, chain + (base,))
        elif base in defs:
            parent = defs[base]
        else:  # a shipped config or a config file that is no experiment of its own
            parent = {"config": base, "options": [], "oake": {}}
        options = variant.get("options") or {}
        if not isinstance(options, Mapping):
            raise ValueError(f"config key '{key}.options': a mapping of dotted config keys to values")
        defs[name] = {
            "config": parent["config"],
            "options": [*parent["options"], dict(options)],
            "oake": {**parent["oake"], **(variant.get("oake") or {})},
            "description": str(variant.get("description") or ""),
            "base": entry_name(base),
            "key": key,
        }
        return defs[name]

    for name in variants:
        resolve(name, (name,))
    return {name: defs[name] for name in [*(entry_name(e) for e in experiments), *variants]}  # the config's order


def resolve_all(
    experiments: Sequence[str],
    variants: Mapping[str, Mapping] | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Experiment]:
    """Every experiment of ``experiments`` and ``variants`` resolved (config loaded, the run-wide ``options`` merged,
    e.g. train.options, then a variant's overrides), by name in that order. Each distinct config file is read
    once."""
    variants = variants or {}
    defs = _definitions(experiments, variants)
    loaded: dict[str, Any] = {}
    out: dict[str, Experiment] = {}
    for name, d in defs.items():
        key = d.get("key", "experiments")
        if d["config"] not in loaded:
            loaded[d["config"]] = load(d["config"], key=key)
        cfg = copy.deepcopy(loaded[d["config"]])
        merged: list[tuple[str, Any]] = []
        for step in [dict(options or {}), *d["options"]]:  # a variant's overrides win over the run-wide ones
            if step:
                try:
                    cfg.merge_from_dict(dict(step))
                except Exception as err:
                    raise ValueError(
                        f"config key '{key}': options {step} do not apply to {d['config']}: {err}"
                    ) from None
        for step in d["options"]:
            merged.extend(step.items())
        prompt_kinds_, caches = reads(cfg, key=key)
        out[name] = Experiment(
            name=name,
            config=str(d["config"]),
            options=tuple(merged),
            prompts=prompt_kinds_,
            caches=caches,
            oake=dict(d["oake"]),
            description=d["description"],
            base=d["base"],
        )
        _check_cli_round_trip(out[name], key)
    return out


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def _check_cli_round_trip(experiment: Experiment, key: str) -> None:
    """The overrides reach training as ``--cfg-options`` words: each must read back (mmengine's DictAction) as the
    value configured, else ValueError naming the key (e.g. a string with a comma or a space, read as a list or
    squeezed)."""
    import argparse

    from mmengine.config import DictAction

    words = experiment.cli_options()
    if not words:
        return
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--o", nargs="+", action=DictAction)
    parsed = parser.parse_args(["--o", *words]).o
    for dotted, value in experiment.option_dict.items():
        if _plain(parsed.get(dotted)) != _plain(value):
            raise ValueError(
                f"config key '{key}': option {dotted}: {value!r} would reach training as {parsed.get(dotted)!r} "
                "(a --cfg-options value; use numbers, booleans, null, lists, or strings without ',', ' ', quotes "
                "or brackets)"
            )


def check_prompts(resolved: Mapping[str, Experiment], kinds: Iterable[str]) -> None:
    """Every prompt kind an experiment's classifiers read is among the configured ``prompts.kinds``."""
    kinds = set(kinds)
    for exp in resolved.values():
        missing = [k for k in exp.prompts if k not in kinds]
        if missing:
            raise ValueError(
                f"config key 'prompts.kinds': experiment {exp.name!r} reads the prompt kind(s) {missing} (its "
                f"classifiers' prompts); configured: {sorted(kinds)}; add them to prompts.kinds"
            )


def names(cfg: Mapping) -> list[str]:
    """The experiment names of a workflow configuration: ``experiments`` (a file by its stem), then ``variants``."""
    return [entry_name(e) for e in cfg.get("experiments", [])] + list(cfg.get("variants") or {})


_CHECKED: dict[str, dict[str, Experiment]] = {}


def _stamp(files: Iterable[str | Path]) -> list:
    """Modification times of the config files (a changed file is read again)."""
    return [(str(p), p.stat().st_mtime_ns if p.is_file() else None) for p in map(Path, files)]


def check(cfg: Mapping) -> dict[str, Experiment]:
    """The workflow configuration's experiments and variants, resolved and checked (names, files, options, the
    prompt kinds they read); ValueError naming the config key otherwise. Remembered for the same configuration,
    working directory and config files (the workflow asks while it validates and again while it plans)."""
    experiments, variants = list(cfg.get("experiments", [])), dict(cfg.get("variants") or {})
    options, kinds = dict(cfg["train"].get("options") or {}), list(cfg["prompts"]["kinds"])
    files = sorted(CONFIG_DIR.rglob("*.py")) + [e for e in experiments if is_path(e)]
    files += [v["from"] for v in variants.values() if isinstance(v, Mapping) and is_path(str(v.get("from", "")))]
    key = json.dumps([experiments, variants, options, kinds, str(Path.cwd()), _stamp(files)], default=str)
    if key not in _CHECKED:
        resolved = resolve_all(experiments, variants, options)
        check_prompts(resolved, kinds)
        _CHECKED[key] = resolved
    return _CHECKED[key]
