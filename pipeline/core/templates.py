"""Prompt templates shared by the prompts stage and the demo's caption generator (no heavy imports)."""

from __future__ import annotations

import itertools

_SIZES = ("", "small ", "medium ", "large ")


def vild_templates() -> list[str]:
    """The 74 ViLD prompt templates of method section 3.1, each with one ``{}`` slot."""
    out = []
    for s in _SIZES:
        out += [f"a photo of a {s}{{}}", f"a photo of a {s}{{}} in the scene", f"This is a photo of a {s}{{}}"]
    for lead, det, s in itertools.product(("This is", "There is"), ("a", "the", "one"), _SIZES):
        out += [f"{lead} {det} {s}{{}} in the photo", f"{lead} {det} {s}{{}} in the picture"]
    for lead, det in itertools.product(("This is", "There is"), ("a", "the", "one")):
        out.append(f"{lead} {det} {{}} in the scene")
    for s in _SIZES[1:]:
        out += [f"This is one {s}{{}} in the scene", f"There is a {s}{{}} in the scene"]
    out += ["This is a {}", "There is a {}"]
    return out
