"""Extraction settings of OAKE (the settings the paper ablates) and the folder their shards live in.

A setting changes the rows of some kinds only; the shards of a kind are written under a folder named by the
kind and the settings that change it and differ from their defaults (the schema's ``oake.<setting>`` defaults,
the reference's behaviour), in the order of :data:`SETTINGS`::

    objects                          every setting at its default
    objects-expand_constant          expand_mode: constant
    objects-expand_rectangle-mask_off   expand_mode: rectangle, object_masking: false

so two runs with the same settings share one folder, and a setting that does not change a kind (every setting
here changes objects only: globals and blocks have no crops and no mask) leaves that kind's folder as it is.

Only the standard library: the workflow loads this file while it plans (``workflow/rules/inputs/oake.smk``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: setting -> the kinds whose rows it changes (config key ``oake.<setting>``, option ``--<setting>`` of the stage)
SETTINGS: dict[str, tuple[str, ...]] = {
    "expand_mode": ("objects",),  # the crop strategy: adaptive, constant, longest_edge, rectangle
    "object_masking": ("objects",),  # the object-aware attention mask of the [OBJ] token
}
_TOKEN = re.compile(r"^[a-z0-9_]+$")
#: a folder suffix as a regular expression: empty (every setting at its default) or ``-word-word...``
SUFFIX_PATTERN = "(-[a-z0-9_]+)*"


def token(setting: str, value: Any) -> str:
    """The folder word of one setting's value: ``expand_<mode>``, ``mask_on`` / ``mask_off``."""
    if setting == "expand_mode":
        word = f"expand_{value}"
    elif setting == "object_masking":
        word = "mask_on" if value else "mask_off"
    else:
        raise ValueError(f"unknown OAKE extraction setting {setting!r} (known: {', '.join(SETTINGS)})")
    if not _TOKEN.match(word):
        raise ValueError(f"OAKE extraction setting {setting}: {value!r} cannot name a folder")
    return word


def resolve(defaults: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, key: str = "oake") -> dict:
    """Every setting of :data:`SETTINGS`: ``overrides`` (e.g. a variant's ``oake`` mapping) over ``defaults``
    (the run's ``oake`` section). An unknown setting is a ``ValueError`` naming ``key``."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(SETTINGS))
    if unknown:
        raise ValueError(f"config key '{key}': unknown OAKE extraction setting(s) {unknown}; known: {list(SETTINGS)}")
    return {name: overrides.get(name, defaults[name]) for name in SETTINGS}


def kind_folder(kind: str, settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """The folder of ``kind``'s shards under ``results/oake/{dataset}/``: the kind, then one word per setting that
    changes it and differs from ``defaults`` (:func:`token`), joined by ``-``."""
    changed = [name for name, kinds in SETTINGS.items() if kind in kinds and settings[name] != defaults[name]]
    return "-".join([kind, *(token(name, settings[name]) for name in changed)])


def parse_suffix(suffix: str, kind: str, defaults: Mapping[str, Any]) -> dict:
    """The settings a folder suffix names (``""`` or ``-word-word``, the words of :func:`kind_folder` after the
    kind), the others at ``defaults``. A word that names no value of a setting of ``kind``, or a suffix that is not
    the canonical one for its settings (order, repeats, defaults spelled out), is a ``ValueError``."""
    settings = {name: defaults[name] for name in SETTINGS}
    words = suffix.split("-")[1:] if suffix else []
    if suffix and (not suffix.startswith("-") or "" in words):
        raise ValueError(f"OAKE folder suffix {suffix!r}: expected -word-word...")
    for word in words:
        matches = [(name, value) for name, kinds in SETTINGS.items() if kind in kinds for value in _values(name, word)]
        if len(matches) != 1:
            raise ValueError(f"OAKE folder {kind}{suffix}: {word!r} names no extraction setting of {kind}")
        name, value = matches[0]
        settings[name] = value
    canonical = kind_folder(kind, settings, defaults)
    if canonical != kind + suffix:
        raise ValueError(f"OAKE folder {kind}{suffix}: not the folder of its settings, which is {canonical}")
    return settings


def _values(setting: str, word: str) -> list[Any]:
    """The values of ``setting`` whose :func:`token` is ``word`` (at most one)."""
    if setting == "object_masking":
        return [v for v in (True, False) if token(setting, v) == word]
    if setting == "expand_mode" and word.startswith("expand_"):
        return [word[len("expand_") :]]
    return []
