"""OSM open-ended accuracy: predicted strings scored against ground-truth class names by string matching.

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

:func:`synonym_table` builds ``{category name: [normalised synonym]}`` from category records (+ a synonyms file,
:func:`load_synonyms`); :func:`accuracy` scores one list of predictions against one list of GT names.
:class:`OpenEndedError` (a ``ValueError``) is the error of every open-ended module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core import atomic


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
