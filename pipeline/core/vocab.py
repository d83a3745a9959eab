"""Category vocabularies and base/novel splits: the one canonical category order of the project.

OV-COCO uses the OVR-CNN 48/17 split (method §2.1), both lists in COCO-id order; the 15 COCO classes outside the
65 are dropped. OV-LVIS takes novel = the 337 rare (``frequency == 'r'``) categories and base = the 866 common and
frequent ones, both in LVIS-id order. The demo dataset and a user's dataset (``dataset: custom``,
:func:`custom_split`) take their split from the config, by name. In every case the remapped category id is the
index in ``bases + novels``: bases first, 0-based.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

COCO_BASE: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "train", "truck", "boat", "bench", "bird", "horse", "sheep",
    "bear", "zebra", "giraffe", "backpack", "handbag", "suitcase", "frisbee", "skis", "kite", "surfboard",
    "bottle", "fork", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "pizza",
    "donut", "chair", "bed", "toilet", "tv", "laptop", "mouse", "remote", "microwave", "oven", "toaster",
    "refrigerator", "book", "clock", "vase", "toothbrush",
)  # fmt: skip
COCO_NOVEL: tuple[str, ...] = (
    "airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard", "skateboard", "cup",
    "knife", "cake", "couch", "keyboard", "sink", "scissors",
)  # fmt: skip

LVIS_NOVEL_FREQUENCY = "r"
LVIS_FREQUENCIES = ("r", "c", "f")
LVIS_NUM_BASES = 866  # OV-LVIS v1: the common and frequent categories of the 1203 (the 337 rare ones are novel)


class VocabError(ValueError):
    """A split or category list that does not fit the annotation file it is applied to."""


@dataclass(frozen=True)
class Split:
    """A base/novel category split, both lists in the file's category-id order.

    Attributes:
        bases: base category names; remapped ids ``0 .. len(bases) - 1``.
        novels: novel category names; remapped ids follow the bases.
    """

    bases: tuple[str, ...]
    novels: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """All names in remapped-id order (bases first)."""
        return self.bases + self.novels

    @property
    def num_bases(self) -> int:
        return len(self.bases)

    def new_id(self) -> dict[str, int]:
        """Name -> remapped 0-based id."""
        return {name: i for i, name in enumerate(self.names)}


def check_split(split: Split, categories: Sequence[Mapping], source: str) -> None:
    """Raise :class:`VocabError` naming ``source`` and the offending names if ``split`` does not fit.

    Checks: no duplicate name inside a list, base and novel disjoint, every name present in ``categories`` (the
    message gives the :func:`closest` category names of each unknown one).
    """
    for label, names in (("base", split.bases), ("novel", split.novels)):
        seen: set[str] = set()
        dup = sorted({n for n in names if n in seen or seen.add(n)})
        if dup:
            raise VocabError(f"{source}: {label} list repeats {dup}")
    both = sorted(set(split.bases) & set(split.novels))
    if both:
        raise VocabError(f"{source}: split is not disjoint: {both} are both base and novel")
    known = [c["name"] for c in categories]
    known_set = set(known)
    missing = [n for n in split.names if n not in known_set]
    if missing:
        hints = "; ".join(f"{n!r}: closest {closest(n, known)}" for n in missing[:5])
        raise VocabError(f"{source}: split names not among the file's categories: {missing} ({hints})")


def normalised_name(name: str) -> str:
    """The form in which two class names are the same class to a reader and to CLIP's lower-casing tokenizer:
    case-folded, whitespace runs as one space, no leading or trailing space."""
    return " ".join(name.casefold().split())


def check_distinct(names: Iterable[str], source: str) -> None:
    """Raise :class:`VocabError` naming ``source`` and both names when two of ``names`` are equal or differ only by
    case or spacing (``Red Circle`` and ``red  circle``): they would get one text embedding under two ids."""
    seen: dict[str, str] = {}
    for name in names:
        key = normalised_name(name)
        if key in seen:
            if seen[key] == name:
                raise VocabError(f"{source}: class name {name!r} is repeated")
            raise VocabError(
                f"{source}: class names {seen[key]!r} and {name!r} differ only by case or spacing: give each class "
                "one distinct name"
            )
        seen[key] = name


def closest(name: str, known: Sequence[str], n: int = 3) -> list[str]:
    """Up to ``n`` names of ``known`` most similar to ``name`` (difflib ratio, ignoring case), best first; the
    best single match when none reaches the similarity cutoff (0.6)."""
    folded: dict[str, str] = {}
    for k in known:
        folded.setdefault(k.casefold(), k)
    keys = list(folded)
    matches = difflib.get_close_matches(name.casefold(), keys, n=n) or difflib.get_close_matches(
        name.casefold(), keys, n=1, cutoff=0.0
    )
    return [folded[m] for m in matches]


def ordered_by_id(names: Iterable[str], categories: Sequence[Mapping]) -> tuple[str, ...]:
    """``names`` sorted by the category id they have in ``categories``."""
    ids = {c["name"]: c["id"] for c in categories}
    return tuple(sorted(names, key=lambda n: ids[n]))


def coco_split() -> Split:
    """The OV-COCO 48/17 split (method §2.1)."""
    return Split(COCO_BASE, COCO_NOVEL)


def lvis_split(categories: Sequence[Mapping], source: str = "LVIS categories") -> Split:
    """The OV-LVIS split from the ``frequency`` field: novel = rare, base = common + frequent, id order."""
    bad = [c.get("name", c.get("id")) for c in categories if c.get("frequency") not in LVIS_FREQUENCIES]
    if bad:
        raise VocabError(f"{source}: categories without a frequency in {LVIS_FREQUENCIES}: {bad[:10]}")
    ordered = sorted(categories, key=lambda c: c["id"])
    novels = tuple(c["name"] for c in ordered if c["frequency"] == LVIS_NOVEL_FREQUENCY)
    bases = tuple(c["name"] for c in ordered if c["frequency"] != LVIS_NOVEL_FREQUENCY)
    return Split(bases, novels)


def named_split(base: Sequence[str], novel: Sequence[str], categories: Sequence[Mapping], source: str) -> Split:
    """A split given by name (the demo's config), checked against ``categories`` and put in id order."""
    split = Split(tuple(base), tuple(novel))
    check_split(split, categories, source)
    return Split(ordered_by_id(base, categories), ordered_by_id(novel, categories))


def custom_split(novel: Sequence[str], base: Sequence[str] | None, categories: Sequence[Mapping], source: str) -> Split:
    """The split of a user's dataset (``dataset: custom``), given by name and put in id order.

    ``base`` None (or empty) = every category of ``categories`` that is not novel; an explicit ``base`` leaves the
    categories named in neither list out of the split (as OV-COCO leaves 15 COCO classes out). Raises
    :class:`VocabError` naming ``source`` for the checks of :func:`check_split` (an unknown name comes with the
    closest category names) and for a split without a base or a novel class.
    """
    if not base:
        novel_set = set(novel)
        base = [c["name"] for c in categories if c["name"] not in novel_set]
    split = named_split(base, novel, categories, source)
    for label, names in (("base", split.bases), ("novel", split.novels)):
        if not names:
            raise VocabError(f"{source}: the split has no {label} class (categories: {len(categories)})")
    return split
