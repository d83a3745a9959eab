"""Open-ended recognition metrics: OSM string matching and the LAC relationship levels (a library).

OSM protocol (RELATED_SYSTEMS §2.2, Yu et al. ECCV 2024, ``test/evaluate_pred.py``)
    Every region comes with a ground-truth class and one predicted *string*. The class is expanded into its
    synonym list (the class name, the LVIS ``synonyms`` field with ``_`` read as a space, and optionally the
    entries of a synonyms file ``{name: [synonym, ...]}``; COCO categories carry the name only) and that list is
    augmented with naive plural / singular forms (:func:`plural_singular_forms`: +s, +es, y->ies, f/fe->ves and
    the reverse strippings). A prediction is correct when its normalised form is exactly in the augmented list.
    *Not-in-vocabulary* counts predictions that are not in the evaluation dataset's own un-augmented
    vocabulary (the union of every class's synonym list, no plural forms: a plural prediction of a known class
    is correct and still not in the vocabulary, as in OSM). Crowd regions are skipped.

    Normalisation (both sides): lower case, ``_`` -> space, runs of white space -> one space, stripped.

    Numbers are in percent (like the detection metrics); ``None`` when no region was counted.

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
    "dog running", head "running"); singular and plural are matched through :func:`plural_singular_forms`
    rather than a dictionary singulariser. The full normalised description is always tried first, so
    predictions that are vocabulary names (the proxy predictor's) match exactly.

Proxy predictor (region classification by the detector, used by ``python -m pipeline.evaluate --regions``)
    :func:`load_regions` reads the train stage's ``REGIONS.npz`` (``ann_ids int64 [N]``, ``image_ids int64 [N]``,
    ``category_ids int64 [N]`` remapped GT ids, ``iscrowd uint8 [N]``, ``embeddings float32 [N, D]``);
    :func:`predict_names` takes the argmax cosine over a vocabulary of (name, embedding) rows; the predicted
    *string* is that name, so a vocabulary larger than the dataset's makes the task open-ended.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import atomic

LAC_LEVELS = ("exact", "synonyms", "hyponyms", "meronyms")
_LAC_IGNORED = ("semantically_related", "id")


class OpenEndedError(ValueError):
    """Unusable open-ended input; the message names the file and the offending key, name or id."""


# ------------------------------------------------------------------------------------------- strings


def normalize(text: str) -> str:
    """Lower case, ``_`` -> space, white space collapsed, stripped."""
    return " ".join(str(text).replace("_", " ").lower().split())


def plural_singular_forms(word: str) -> list[str]:
    """OSM's naive augmentation of one (normalised) name: itself, +s, +es, y->ies, f->ves, fe->ves, and the
    reverse strippings (-s, -es, ies->y, ves->f / fe). Order kept, no duplicates, no empty strings.

    Only the last word changes ("traffic light" -> "traffic lights"), as string suffix rules do.
    """
    forms = [word, word + "s", word + "es"]
    if word.endswith("y"):
        forms.append(word[:-1] + "ies")
    if word.endswith("fe"):
        forms.append(word[:-2] + "ves")
    elif word.endswith("f"):
        forms.append(word[:-1] + "ves")
    if word.endswith("s"):
        forms.append(word[:-1])
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("ves"):
        forms += [word[:-3] + "f", word[:-3] + "fe"]
    return [f for f in dict.fromkeys(forms) if f]


def expand(names: Iterable[str]) -> set[str]:
    """The augmented set: every plural / singular form of every normalised name."""
    out: set[str] = set()
    for name in names:
        out.update(plural_singular_forms(normalize(name)))
    return out


# ------------------------------------------------------------------------------------------- synonyms


def load_synonyms(path: str | Path) -> dict[str, list[str]]:
    """A synonyms file ``{name: [synonym, ...]}`` (JSON); errors name the file and the key."""
    data = atomic.read_json(path)
    if not isinstance(data, dict):
        raise OpenEndedError(f"{path}: expected an object {{name: [synonym, ...]}}")
    for name, syns in data.items():
        if not isinstance(syns, list) or not all(isinstance(s, str) for s in syns):
            raise OpenEndedError(f"{path}: entry '{name}' must be a list of strings")
    return {str(k): list(v) for k, v in data.items()}


def synonym_table(
    categories: Sequence[Mapping[str, Any]], extra: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[str]]:
    """Category name -> normalised synonym list: the name, the LVIS ``synonyms`` field (``_`` -> space) when
    present, then ``extra[name]`` (a synonyms file; its entries for other names are ignored). No duplicates.
    """
    table: dict[str, list[str]] = {}
    extra = extra or {}
    for cat in categories:
        name = cat["name"]
        syns = [name, *cat.get("synonyms", []), *extra.get(name, [])]
        table[name] = [s for s in dict.fromkeys(normalize(s) for s in syns) if s]
    return table


def dataset_vocabulary(synonyms: Mapping[str, Sequence[str]]) -> set[str]:
    """The dataset's un-augmented vocabulary: every normalised synonym of every class."""
    return {normalize(s) for syns in synonyms.values() for s in syns}


# ------------------------------------------------------------------------------------------- OSM accuracy


def _percent(k: int, n: int) -> float | None:
    return 100.0 * k / n if n else None


def accuracy(
    predictions: Sequence[str],
    gt_names: Sequence[str],
    synonyms: Mapping[str, Sequence[str]],
    vocabulary: Iterable[str] | None = None,
    iscrowd: Sequence[int] | None = None,
) -> dict[str, Any]:
    """OSM accuracy of predicted strings against ground-truth class names.

    Args:
        predictions: one predicted string per region.
        gt_names: the ground-truth category name per region (keys of ``synonyms``).
        synonyms: category name -> synonym list (:func:`synonym_table`); augmented here with plural forms.
        vocabulary: the dataset's un-augmented vocabulary (default: :func:`dataset_vocabulary` of ``synonyms``).
        iscrowd: per-region crowd flags; crowd regions are skipped.

    Returns:
        ``{"accuracy": %, "not_in_vocab_rate": %, "n", "n_correct", "n_not_in_vocab", "n_crowd_skipped"}``;
        the percentages are ``None`` when ``n == 0``.
    """
    if len(predictions) != len(gt_names) or (iscrowd is not None and len(iscrowd) != len(gt_names)):
        raise OpenEndedError(
            f"accuracy: {len(predictions)} predictions, {len(gt_names)} GT names"
            + ("" if iscrowd is None else f", {len(iscrowd)} crowd flags")
        )
    vocab = {normalize(v) for v in vocabulary} if vocabulary is not None else dataset_vocabulary(synonyms)
    augmented: dict[str, set[str]] = {}
    n = correct = niv = crowd = 0
    for i, (pred, gt) in enumerate(zip(predictions, gt_names, strict=True)):
        if iscrowd is not None and iscrowd[i]:
            crowd += 1
            continue
        if gt not in augmented:
            if gt not in synonyms:
                raise OpenEndedError(f"accuracy: ground-truth name '{gt}' (region #{i}) has no synonym entry")
            augmented[gt] = expand(synonyms[gt])
        p = normalize(pred)
        n += 1
        correct += p in augmented[gt]
        niv += p not in vocab
    return {
        "accuracy": _percent(correct, n),
        "not_in_vocab_rate": _percent(niv, n),
        "n": n,
        "n_correct": correct,
        "n_not_in_vocab": niv,
        "n_crowd_skipped": crowd,
    }


# ------------------------------------------------------------------------------------------- LAC


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


# ------------------------------------------------------------------------------------------- proxy predictor

REGION_ARRAYS = {
    "ann_ids": "i",
    "image_ids": "i",
    "category_ids": "i",
    "iscrowd": "iub",
    "embeddings": "f",
}


@dataclass(frozen=True)
class Regions:
    """Ground-truth regions with the detector's embedding of each (``REGIONS.npz``)."""

    ann_ids: np.ndarray
    image_ids: np.ndarray
    category_ids: np.ndarray
    iscrowd: np.ndarray
    embeddings: np.ndarray
    object_embeddings: np.ndarray | None = None  # the object head's, for detectors that have one

    def __len__(self) -> int:
        return len(self.ann_ids)


def load_regions(path: str | Path) -> Regions:
    """Read and check a regions file (``np.load(allow_pickle=False)``); errors name the file and the array."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError as exc:
        raise OpenEndedError(f"{path}: file not found") from exc
    except Exception as exc:  # noqa: BLE001 - zip / format / pickled-object errors all mean "unusable"
        raise OpenEndedError(f"{path}: not a readable npz of plain arrays ({type(exc).__name__}: {exc})") from exc
    missing = [k for k in REGION_ARRAYS if k not in arrays]
    if missing:
        raise OpenEndedError(f"{path}: missing array(s) {missing} (need {list(REGION_ARRAYS)})")
    n = len(arrays["ann_ids"])
    for key, kinds in REGION_ARRAYS.items():
        arr = arrays[key]
        if arr.dtype.kind not in kinds:
            raise OpenEndedError(f"{path}: '{key}' has dtype {arr.dtype}, expected kind {kinds!r}")
        want_ndim = 2 if key == "embeddings" else 1
        if arr.ndim != want_ndim or len(arr) != n:
            raise OpenEndedError(f"{path}: '{key}' has shape {arr.shape}; expected {n} rows, {want_ndim}-D")
    emb = arrays["embeddings"].astype(np.float32)
    if not np.isfinite(emb).all():
        raise OpenEndedError(f"{path}: 'embeddings' holds non-finite values")
    obj = arrays.get("object_embeddings")
    if obj is not None:
        if obj.dtype.kind != "f" or obj.shape != emb.shape:
            raise OpenEndedError(
                f"{path}: 'object_embeddings' has shape {obj.shape} / dtype {obj.dtype}; expected float {emb.shape}"
            )
        obj = obj.astype(np.float32)
        if not np.isfinite(obj).all():
            raise OpenEndedError(f"{path}: 'object_embeddings' holds non-finite values")
    return Regions(
        ann_ids=arrays["ann_ids"].astype(np.int64),
        image_ids=arrays["image_ids"].astype(np.int64),
        category_ids=arrays["category_ids"].astype(np.int64),
        iscrowd=arrays["iscrowd"].astype(np.uint8),
        embeddings=emb,
        object_embeddings=obj,
    )


def check_regions(regions: Regions, annotations: Mapping[str, Any], regions_source: str, gt_source: str) -> None:
    """Every non-crowd region must be an annotation of the GT file with the same image and category id.

    Crowd regions are skipped by the protocol, so they may be absent (an LVIS-format file made from a COCO one
    has no crowd annotations, while the regions were taken from the COCO file)."""
    anns = {a["id"]: a for a in annotations["annotations"]}
    cat_ids = {c["id"] for c in annotations["categories"]}
    unknown = sorted(set(regions.category_ids.tolist()) - cat_ids)
    if unknown:
        raise OpenEndedError(f"{regions_source}: category ids {unknown[:10]} are not categories of {gt_source}")
    for ann_id, image_id, cat_id, crowd in zip(
        regions.ann_ids.tolist(),
        regions.image_ids.tolist(),
        regions.category_ids.tolist(),
        regions.iscrowd.tolist(),
        strict=True,
    ):
        ann = anns.get(ann_id)
        if ann is None:
            if crowd:
                continue
            raise OpenEndedError(f"{regions_source}: annotation id {ann_id} is not in {gt_source}")
        if ann["image_id"] != image_id or ann["category_id"] != cat_id:
            raise OpenEndedError(
                f"{regions_source}: annotation {ann_id} has image {image_id} / category {cat_id}, but {gt_source} "
                f"says image {ann['image_id']} / category {ann['category_id']}"
            )


def _unit_rows(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise OpenEndedError(f"{what}: row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros")
    return x / norms


def predict_names(embeddings: np.ndarray, vocab_embeddings: np.ndarray, names: Sequence[str]) -> list[str]:
    """The vocabulary name of highest cosine similarity for each region (ties: the first name)."""
    if len(names) != len(vocab_embeddings):
        raise OpenEndedError(f"predict_names: {len(names)} names for {len(vocab_embeddings)} vocabulary rows")
    if len(embeddings) == 0:
        return []
    if embeddings.shape[1] != vocab_embeddings.shape[1]:
        raise OpenEndedError(
            f"predict_names: region embeddings have {embeddings.shape[1]} dims, the vocabulary "
            f"{vocab_embeddings.shape[1]}"
        )
    sims = _unit_rows(embeddings, "region embeddings") @ _unit_rows(vocab_embeddings, "vocabulary").T
    return [names[i] for i in sims.argmax(1).tolist()]


def region_report(
    regions: Regions,
    predictions: Sequence[str],
    categories: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Callable[[Mapping[str, Any]], bool]],
    synonyms: Mapping[str, Sequence[str]],
    relationships: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    top_confusions: int = 20,
) -> dict[str, Any]:
    """OSM metrics of region predictions overall, per group of categories, per class (+ LAC levels).

    Args:
        groups: group name -> predicate on a category record (e.g. base / novel, LVIS r / c / f).
    """
    by_id = {c["id"]: c for c in categories}
    gt_names = [by_id[c]["name"] for c in regions.category_ids.tolist()]
    crowd = regions.iscrowd.tolist()
    vocab = dataset_vocabulary(synonyms)
    report: dict[str, Any] = {"all": accuracy(predictions, gt_names, synonyms, vocab, crowd)}
    for group, pred in groups.items():
        idx = [i for i, c in enumerate(regions.category_ids.tolist()) if pred(by_id[c])]
        report[group] = accuracy(
            [predictions[i] for i in idx], [gt_names[i] for i in idx], synonyms, vocab, [crowd[i] for i in idx]
        )
    per_class = {}
    for name in dict.fromkeys(gt_names):
        idx = [i for i, g in enumerate(gt_names) if g == name]
        r = accuracy([predictions[i] for i in idx], [name] * len(idx), synonyms, vocab, [crowd[i] for i in idx])
        per_class[name] = {"n": r["n"], "accuracy": r["accuracy"], "not_in_vocab_rate": r["not_in_vocab_rate"]}
    report["per_class"] = per_class
    augmented = {g: expand(synonyms[g]) for g in per_class}
    wrong = Counter(
        (g, p)
        for g, p, c in zip(gt_names, predictions, crowd, strict=True)
        if not c and normalize(p) not in augmented[g]
    )
    report["top_confusions"] = [{"gt": g, "pred": p, "count": k} for (g, p), k in wrong.most_common(top_confusions)]
    if relationships is not None:
        report["lac"] = lac_accuracy(predictions, gt_names, relationships, crowd)
    return report
