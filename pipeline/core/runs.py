"""Run names: what the workflow trains and evaluates under ``results/train/<run>/`` and ``results/evaluate/<run>/``.

An experiment (a shipped detector config, a user's config file, or a variant of the config ``variants``) is named
by :data:`NAME_PATTERN`: letters, digits, ``_`` and ``-``, starting with a letter or digit. Such a name is one path
component and one shell word that needs no quoting and cannot be read as an option. An experiment ``E`` trains
once with its config's own seed (run ``E``) and, for every extra seed N of ``train.seeds``, as run ``E+seedN``
(``randomness.seed=N``; same config, own work dir and evaluation).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SEED_MARK = "+seed"  # run name = experiment + SEED_MARK + seed
NAME_PATTERN = "[A-Za-z0-9][A-Za-z0-9_-]*"
_NAME = re.compile(NAME_PATTERN)


def check_name(name: str, key: str = "experiments") -> str:
    """``name`` when it is a valid experiment name (:data:`NAME_PATTERN`); else ValueError naming the config key."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"config key '{key}': {name!r} is not a valid experiment name (letters, digits, '_' and '-', starting "
            "with a letter or digit: it names folders and appears in shell commands)"
        )
    return name


def split_run(name: str) -> tuple[str, int | None]:
    """``(experiment, seed)`` of a run name: ``vild_demo+seed2`` -> ``("vild_demo", 2)``; a name without the seed
    mark is the experiment's own run, ``(name, None)`` (the config's seed)."""
    experiment, mark, seed = name.rpartition(SEED_MARK)
    if not mark:
        return name, None
    if not experiment or not seed.isdigit():
        raise ValueError(f"run {name!r}: expected EXPERIMENT{SEED_MARK}N with an integer N")
    return experiment, int(seed)


def seed_run(experiment: str, seed: int) -> str:
    """The run name of ``experiment`` trained with ``seed``."""
    return f"{experiment}{SEED_MARK}{int(seed)}"


def all_runs(experiments: Iterable[str], seeds: Iterable[int]) -> list[str]:
    """Every run: each experiment (its config's seed) followed by its seed runs; no seeds: the experiments."""
    seeds = list(seeds)
    runs = []
    for experiment in experiments:
        runs.append(experiment)
        runs.extend(seed_run(experiment, n) for n in seeds)
    return runs
