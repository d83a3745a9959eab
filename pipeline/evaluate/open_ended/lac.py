"""LAC relationship levels: free-text descriptions scored against ground-truth classes at four cumulative levels.

LAC levels (RELATED_SYSTEMS §3.3, BCV-Uniandes ``LAC/eval_open_vocab_seg_full_metric_set.py``), optional
    Accepted relationships JSON (the released GPT-4 files have this shape)::

        {"<category name>": {"exact": [str], "synonyms": [str], "hyponyms": [str], "meronyms": [str],
                             "semantically_related": [str], "id": int}, ...}

    Every list is optional (missing = empty; ``exact`` defaults to ``[name]``, the name is always added);
    ``semantically_related`` and ``id`` are accepted and ignored, as in LAC. For each cumulative level
    (exact < +synonyms < +hyponyms < +meronyms) a region is *correct* when a noun candidate of its description
    is in the GT class's lists up to that level (hyponym candidate from level ``hyponyms``, meronym candidates
    from level ``meronyms``), *confused* when a noun candidate is in some other class's lists at a level not
    above the current one (lowest level first, then category order), else *not in vocabulary*. Reported per
    level: counts, accuracy (pACC), mean per-class accuracy (mACC) and the not-in-vocabulary rate.

    Noun extraction is rule-based (:func:`extract_noun`), an approximation of LAC's spaCy + flair + inflect
    pipeline, which needs downloaded models: normalise, drop parenthesised qualifiers and punctuation, drop a
    leading "there is / this is / it is ..." and determiners / numerals, split at the first preposition; the
    words before it are the noun *phrase* and its last word the *head*; after "of" the next phrase's head is
    the hyponym candidate ("a kind of dog" -> dog) and a meronym candidate, after "on" a meronym candidate,
    and the non-head words of the phrase are meronym candidates too. There is no part-of-speech tagging, so
    adjectives stay in the phrase (only the head and the full phrase are tried as the noun) and become
    meronym candidates; verbs and relative clauses are not recognised ("a dog running on grass" -> phrase
    "dog running", head "running"); singular and plural are matched through OSM's ``plural_singular_forms``
    rather than a dictionary singulariser. The full normalised description is always tried first, so
    predictions that are vocabulary names (the proxy predictor's) match exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.core import atomic
from pipeline.evaluate.open_ended.osm import OpenEndedError, _percent, expand, normalize

LAC_LEVELS = ("exact", "synonyms", "hyponyms", "meronyms")
_LAC_IGNORED = ("semantically_related", "id")


def load_relationships(path: str | Path) -> dict[str, dict[str, list[str]]]:
    """Read a LAC relationships JSON (format in the module docstring) -> name -> {level: [str]}.

    Raises:
        OpenEndedError: naming the file and the category / key that is malformed.
    """
    data = atomic.read_json(path)
    if not isinstance(data, dict) or not data:
        raise OpenEndedError(f"{path}: expected a non-empty object {{category: {{exact, synonyms, ...}}}}")
    out: dict[str, dict[str, list[str]]] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise OpenEndedError(f"{path}: entry '{name}' must be an object of relationship lists")
        unknown = sorted(set(entry) - set(LAC_LEVELS) - set(_LAC_IGNORED))
        if unknown:
            raise OpenEndedError(f"{path}: entry '{name}' has unknown key(s) {unknown} (allowed: {LAC_LEVELS})")
        levels: dict[str, list[str]] = {}
        for level in LAC_LEVELS:
            values = entry.get(level, [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise OpenEndedError(f"{path}: '{name}'.{level} must be a list of strings")
            levels[level] = list(values)
        levels["exact"] = [name, *levels["exact"]]
        out[str(name)] = levels
    return out


_LEADING = (
    ("there", "is"),
    ("there", "are"),
    ("this", "is"),
    ("these", "are"),
    ("it", "is"),
    ("that", "is"),
)
_DETERMINERS = frozenset(
    "a an the some one two three four five several many few this that these those its his her their my our your "
    "any each every".split()
)
_PREPOSITIONS = frozenset("of on in with at near under over by from for behind beside above below inside".split())


@dataclass(frozen=True)
class NounParse:
    """What :func:`extract_noun` finds in one description."""

    full: str  # the whole normalised description
    phrase: str  # the main noun phrase (determiners stripped)
    head: str  # its last word
    hyponym: str | None  # "a X of Y" -> head of Y
    meronyms: tuple[str, ...]  # "X of/on Y" -> head of Y, plus the non-head words of the phrase


def _strip_determiners(words: list[str]) -> list[str]:
    while words and words[0] in _DETERMINERS:
        words = words[1:]
    return words


def extract_noun(description: str) -> NounParse:
    """Rule-based noun extraction (the approximation documented in the module docstring)."""
    full = normalize(description)
    text = re.sub(r"\([^)]*\)", " ", full)
    text = re.sub(r"[^a-z0-9\s-]", " ", text)
    words = text.split()
    for lead in _LEADING:
        if tuple(words[: len(lead)]) == lead:
            words = words[len(lead) :]
            break
    words = _strip_determiners(words)
    cut = next((i for i, w in enumerate(words) if w in _PREPOSITIONS and i > 0), len(words))
    main, rest = words[:cut], words[cut:]
    phrase = " ".join(main)
    head = main[-1] if main else ""
    hyponym = None
    meronyms = list(main[:-1])
    if rest:
        prep, after = rest[0], _strip_determiners(rest[1:])
        stop = next((i for i, w in enumerate(after) if w in _PREPOSITIONS), len(after))
        tail = after[:stop]
        if tail:
            if prep == "of":
                hyponym = tail[-1]
                meronyms.append(tail[-1])
            elif prep == "on":
                meronyms.append(tail[-1])
    return NounParse(full, phrase, head, hyponym, tuple(dict.fromkeys(m for m in meronyms if m)))


class LACMatcher:
    """Cumulative relationship-level matching over a relationships table (:func:`load_relationships`)."""

    def __init__(self, relationships: Mapping[str, Mapping[str, Sequence[str]]]):
        self.names = list(relationships)
        # per category, per level: the augmented term set of that level alone
        self.sets = {c: [expand(relationships[c].get(level, [])) for level in LAC_LEVELS] for c in self.names}
        self.index: dict[str, list[tuple[int, int]]] = {}
        for ci, c in enumerate(self.names):
            for li, terms in enumerate(self.sets[c]):
                for t in terms:
                    self.index.setdefault(t, []).append((li, ci))
        for entries in self.index.values():
            entries.sort()

    def _in(self, cand: str | None, category: str, level: int) -> bool:
        return bool(cand) and any(cand in s for s in self.sets[category][: level + 1])

    def classify(self, parse: NounParse, gt: str, level: int) -> str | None:
        """``gt`` when matched at ``level``, another category name when confused, ``None`` = not in vocab."""
        nouns = [parse.full, parse.phrase, parse.head]
        if any(self._in(n, gt, level) for n in nouns):
            return gt
        if level >= 2 and self._in(parse.hyponym, gt, level):
            return gt
        if level >= 3 and any(self._in(m, gt, level) for m in parse.meronyms):
            return gt
        best: tuple[int, int] | None = None
        for n in nouns:
            for li, ci in self.index.get(n, ()):
                if li <= level and (best is None or (li, ci) < best):
                    best = (li, ci)
                    break
        return None if best is None else self.names[best[1]]


def lac_accuracy(
    descriptions: Sequence[str],
    gt_names: Sequence[str],
    relationships: Mapping[str, Mapping[str, Sequence[str]]],
    iscrowd: Sequence[int] | None = None,
) -> dict[str, Any]:
    """LAC per-level metrics of free-text descriptions against GT class names.

    Returns:
        ``{"levels": {level: {"n", "correct", "confused", "not_in_vocab", "accuracy" (pACC %),
        "macc" (mean per-class %), "not_in_vocab_rate" %}}, "n_crowd_skipped"}`` for the four cumulative
        levels ``exact``, ``synonyms``, ``hyponyms``, ``meronyms``.
    """
    if len(descriptions) != len(gt_names):
        raise OpenEndedError(f"lac_accuracy: {len(descriptions)} descriptions for {len(gt_names)} GT names")
    missing = sorted({g for g in gt_names if g not in relationships})
    if missing:
        raise OpenEndedError(f"lac_accuracy: GT class(es) without relationships: {missing[:10]}")
    matcher = LACMatcher(relationships)
    keep = [i for i in range(len(gt_names)) if not (iscrowd is not None and iscrowd[i])]
    parses = {i: extract_noun(descriptions[i]) for i in keep}
    levels = {}
    for li, level in enumerate(LAC_LEVELS):
        per_class: dict[str, list[int]] = {}
        correct = confused = niv = 0
        for i in keep:
            got = matcher.classify(parses[i], gt_names[i], li)
            hit = got == gt_names[i]
            correct += hit
            confused += got is not None and not hit
            niv += got is None
            per_class.setdefault(gt_names[i], []).append(int(hit))
        n = len(keep)
        levels[level] = {
            "n": n,
            "correct": correct,
            "confused": confused,
            "not_in_vocab": niv,
            "accuracy": _percent(correct, n),
            "macc": float(np.mean([100.0 * np.mean(v) for v in per_class.values()])) if per_class else None,
            "not_in_vocab_rate": _percent(niv, n),
        }
    return {"levels": levels, "n_crowd_skipped": len(gt_names) - len(keep)}
