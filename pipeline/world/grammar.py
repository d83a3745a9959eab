"""The demo world's class grammar: names ``"<colour> [<texture>] <shape>"`` and what a base/novel split asks.

* :data:`SHAPES`, :data:`COLOURS` (name -> RGB), :data:`TEXTURES` (``solid`` is left out of a name) and
  :data:`SHAPE_SYNONYMS` (shape -> other words for it);
* :class:`ClassSpec`: one parsed class name (``ClassSpec.parse("blue striped square")``);
  :func:`class_synonyms`: the class's other names (``"cyan checkered disc"``);
* :data:`CAPTION_TEMPLATES`: the caption templates, each with one ``{}`` slot for a class name;
* :func:`split_kind`: whether the novel classes are unseen combinations of base parts or unseen shapes.

Bad names raise :class:`DemoDataError` (a ``ValueError``). Pure Python, no drawing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.core.templates import vild_templates

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond", "hexagon", "arrow")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 50, 180),
    "orange": (245, 130, 20),
    "cyan": (40, 200, 210),
    "white": (245, 245, 245),
}
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("disc", "round"),
    "square": ("box",),
    "triangle": ("trigon",),
    "star": ("pentagram",),
    "cross": ("plus",),
    "diamond": ("rhombus", "lozenge"),
    "hexagon": ("hex",),
    "arrow": ("pointer",),
}
# The captions use the 74 ViLD templates (so that the prompts stage's template ensemble speaks the teacher's
# language: with only a handful of caption templates, a tiny text tower maps unseen templates to near-identical
# embeddings, e.g. "red star" = "red circle" at cosine 1.0) and a few of their own.
CAPTION_TEMPLATES: tuple[str, ...] = (
    *vild_templates(),
    "a {}",
    "a picture of a {}",
    "a rendering of a {}",
    "a close-up photo of the {}",
    "a {} on a noisy background",
    "there is a {} in the picture",
    "this is a {}",
)


class DemoDataError(ValueError):
    """Bad generator options (the message names the option or class)."""


@dataclass(frozen=True)
class ClassSpec:
    """One demo category: a shape drawn in a colour with a texture."""

    name: str
    colour: str
    texture: str
    shape: str

    @classmethod
    def parse(cls, name: str) -> ClassSpec:
        """Parse ``"<colour> [<texture>] <shape>"``; raise :class:`DemoDataError` naming a bad name."""
        words = name.split()
        if len(words) == 2:
            words = [words[0], "solid", words[1]]
        if (
            len(words) != 3
            or words[0] not in COLOURS
            or words[1] not in TEXTURES
            or words[2] not in SHAPES
            or (words[1] == "solid" and len(name.split()) == 3)
        ):
            raise DemoDataError(
                f"demo class {name!r} is not '<colour> [<texture>] <shape>' with colour in {sorted(COLOURS)}, "
                f"texture in {list(TEXTURES[1:])} (solid: leave out) and shape in {list(SHAPES)}"
            )
        return cls(name, words[0], words[1], words[2])


def class_synonyms(spec: ClassSpec) -> list[str]:
    """Other names of a class: its shape synonyms (``"cyan checkered disc"``)."""
    words = [spec.colour] + ([spec.texture] if spec.texture != "solid" else [])
    return [" ".join([*words, syn]) for syn in SHAPE_SYNONYMS[spec.shape]]


def split_kind(classes: Sequence[str], novel: Sequence[str]) -> dict:
    """What the base/novel split asks of a detector, from the names alone.

    - ``combinations``: every novel class is an unseen combination: its shape and its colour (or texture) each
      appear in some base class, never together (``"blue circle"`` with base ``"red circle"``, ``"blue triangle"``);
    - ``shapes``: every novel class has a shape that no base class has (an unseen shape, the harder test);
    - ``mixed``: some of each, or novel classes whose colour is unseen too; ``none``: no novel class.

    Returns ``{"kind", "unseen_shapes", "unseen_colours", "per_class"}`` (per novel class: which of its parts
    the base classes show).
    """
    novel_set = set(novel)
    base = [ClassSpec.parse(c) for c in classes if c not in novel_set]
    base_shapes = {b.shape for b in base}
    base_looks = {b.colour for b in base} | {b.texture for b in base if b.texture != "solid"}
    per_class = {}
    for name in novel:
        spec = ClassSpec.parse(name)
        looks = [spec.colour] + ([spec.texture] if spec.texture != "solid" else [])
        per_class[name] = {
            "shape_seen": spec.shape in base_shapes,
            "look_seen": all(w in base_looks for w in looks),
        }
    if not per_class:
        kind = "none"
    elif all(p["shape_seen"] and p["look_seen"] for p in per_class.values()):
        kind = "combinations"
    elif all(not p["shape_seen"] for p in per_class.values()):
        kind = "shapes"
    else:
        kind = "mixed"
    return {
        "kind": kind,
        "unseen_shapes": sorted({ClassSpec.parse(n).shape for n, p in per_class.items() if not p["shape_seen"]}),
        "unseen_colours": sorted({n for n, p in per_class.items() if not p["look_seen"]}),
        "per_class": per_class,
    }
