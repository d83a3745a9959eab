"""The rendered outputs of ``pipeline.detect``: one picture per image and the ``index.html`` that shows them.

A picture shows one name per object: the detections of an image are suppressed class-agnostically for display
(:func:`pipeline.core.render.display_objects`), the strongest name of each object is drawn and the other names on
it (its runners-up) are listed on the page. A small image is drawn enlarged (shorter side at least
:data:`PICTURE_MIN_SIDE` px) so that its labels are readable; ``detections.json`` keeps the image's own coordinates.
Every name and file name reaches the page HTML-escaped.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.core import atomic
from pipeline.core.images import ImageItem, read_rgb
from pipeline.core.render import class_colour, display_objects, draw_detections, upscaled

PICTURE_MIN_SIDE = 480
#: the detector keeps boxes scoring above this (or the threshold, if lower) so that the page can give each name's
#: best score below the threshold; only those above the threshold are detections
SCORE_FLOOR = 0.01


@dataclass(frozen=True)
class Picture:
    """A written picture: its path, the image's file name, and the objects drawn on it, best first, each
    ``(detection record, runners-up [(name, score)])``."""

    path: Path
    source: str
    objects: list[tuple[dict, list[tuple[str, float]]]] = field(default_factory=list)


@dataclass
class ScoreBook:
    """Per vocabulary name, the best score of the boxes at or below ``threshold`` (the boxes the detector scored
    but the threshold dropped): it tells why a name got no detection."""

    threshold: float
    best_below: dict[str, float] = field(default_factory=dict)

    def keep(self, found: Sequence[dict]) -> list[dict]:
        """The records of ``found`` scoring above the threshold; the others only update :attr:`best_below`."""
        kept = []
        for d in found:
            if d["score"] > self.threshold:
                kept.append(d)
            elif d["score"] > self.best_below.get(d["category_name"], -1.0):
                self.best_below[d["category_name"]] = d["score"]
        return kept


def _xyxy(d: dict) -> tuple[float, float, float, float]:
    x, y, w, h = d["bbox"]
    return x, y, x + w, y + h


def write_picture(
    item: ImageItem, detections: Sequence[dict], folder: Path, max_drawn: int, image: Image.Image | None = None
) -> Picture:
    """``folder/<stem>.jpg``: the image (enlarged when small, :func:`pipeline.core.render.upscaled`) with the
    strongest name of each of its ``max_drawn`` best objects drawn (records with ``bbox`` xywh, ``score``,
    ``category_name``); ``image``: the decoded image the detector saw (none: read again)."""
    boxes = [_xyxy(d) for d in detections]
    names = [d["category_name"] for d in detections]
    objects = display_objects(boxes, names, [d["score"] for d in detections])[:max_drawn]
    image, factor = upscaled(read_rgb(item) if image is None else image, PICTURE_MIN_SIDE)
    shown = [detections[i] for i, _ in objects]
    picture = draw_detections(
        image,
        [tuple(v * factor for v in _xyxy(d)) for d in shown],
        [d["category_name"] for d in shown],
        [d["score"] for d in shown],
    )
    path = folder / f"{item.path.stem}.jpg"
    with atomic.atomic_path(path, suffix=".jpg") as tmp:
        picture.save(tmp, format="JPEG", quality=90)
    return Picture(path, item.path.name, [(detections[i], runners) for i, runners in objects])


def _swatch(name: str) -> str:
    r, g, b = class_colour(name)
    return f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>'


def _name_rows(names, base, detections, score_thr, best_below) -> str:
    counts = Counter(d["category_name"] for d in detections)
    best: dict[str, float] = {}
    for d in detections:
        best[d["category_name"]] = max(best.get(d["category_name"], 0.0), d["score"])
    rows = []
    for i, n in enumerate(names):
        below = best_below.get(n)
        if counts.get(n):
            why = f"best {best[n]:.2f}"
        elif below is not None:
            why = f"none above {score_thr:g}: its best box scored {below:.2f}"
        else:
            why = f"no box scored above {min(SCORE_FLOOR, score_thr):g} on these images"
        rows.append(
            f"<tr><td>{i}</td><td>{_swatch(n)}</td><td>{html.escape(n)}</td>"
            f"<td>{'base' if n in base else 'novel'}</td><td>{counts.get(n, 0)}</td><td>{html.escape(why)}</td></tr>"
        )
    return "\n".join(rows)


def _figure(picture: Picture) -> str:
    items = []
    for d, runners in picture.objects:
        also = ", ".join(f"{n} {s:.2f}" for n, s in runners)
        title = f' title="{html.escape("also on this object: " + also)}"' if also else ""
        items.append(
            f"<li{title}>{_swatch(d['category_name'])} {html.escape(d['category_name'])} {d['score']:.2f}"
            + (f' <span class="also">(also: {html.escape(also)})</span>' if also else "")
            + "</li>"
        )
    listing = f"<ol>{''.join(items)}</ol>" if items else "<p>no detection above the threshold</p>"
    src = html.escape(f"pictures/{picture.path.name}")
    return (
        f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(picture.source)}"></a>'
        f"<figcaption><b>{html.escape(picture.source)}</b> ({len(picture.objects)} objects){listing}"
        "</figcaption></figure>"
    )


STYLE = (
    "body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:.5em;vertical-align:top;"
    "width:min(640px,95vw)}figure img{width:100%;border:1px solid #ccc}td,th{padding:0 .6em;text-align:left}"
    ".swatch{display:inline-block;width:1em;height:1em;vertical-align:middle}.also{color:#666;font-size:90%}"
    "ol{margin:.3em 0;padding-left:1.5em;font-size:90%}"
)


def index_html(
    experiment: str,
    names: Sequence[str],
    base: set[str],
    detections: Sequence[dict],
    pictures: Sequence[Picture],
    score_thr: float,
    best_below: Mapping[str, float] | None = None,
) -> str:
    """The page: the vocabulary (id, colour, name, base / novel, detections above ``score_thr``, and the best
    score: of its detections, or of its boxes below the threshold from ``best_below`` when it has none), then
    every picture (linked to the full-size file; relative links, so the page sits in the folder holding
    ``pictures/``) with the objects drawn on it and their runners-up."""
    rows = _name_rows(names, base, detections, score_thr, best_below or {})
    figures = "\n".join(_figure(p) for p in pictures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(experiment)}: detections</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(experiment)}: {len(detections)} detections above {score_thr:g} on {len(pictures)} images</h1>
<table><tr><th>id</th><th></th><th>name</th><th>split</th><th>detections</th><th>score</th></tr>
{rows}
</table>
<p>base: a class the detector was trained on with boxes; novel: any other name (embedded the same way). Each picture
shows one name per object (the strongest; the other names the detector gave the same object are listed after it).
Click a picture for the full-size file.</p>
{figures}
</body></html>
"""
