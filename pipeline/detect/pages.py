"""The rendered outputs of ``pipeline.detect``: one picture per image and the ``index.html`` that shows them."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pipeline.core import atomic
from pipeline.core.images import ImageItem, read_rgb
from pipeline.core.render import class_colour, draw_detections


def write_picture(item: ImageItem, detections: Sequence[dict], folder: Path, max_drawn: int) -> Path:
    """``folder/<stem>.jpg``: the image with its ``max_drawn`` best detections (records with ``bbox`` xywh,
    ``score``, ``category_name``) drawn; returns its path."""
    best = sorted(detections, key=lambda d: -d["score"])[:max_drawn]
    boxes = [(d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]) for d in best]
    picture = draw_detections(read_rgb(item), boxes, [d["category_name"] for d in best], [d["score"] for d in best])
    path = folder / f"{item.path.stem}.jpg"
    with atomic.atomic_path(path, suffix=".jpg") as tmp:
        picture.save(tmp, format="JPEG", quality=90)
    return path


def _swatch(name: str) -> str:
    r, g, b = class_colour(name)
    return f'<span style="display:inline-block;width:1em;height:1em;background:rgb({r},{g},{b})"></span>'


def index_html(
    experiment: str,
    names: Sequence[str],
    base: set[str],
    detections: Sequence[dict],
    pictures: Sequence[Path],
    score_thr: float,
) -> str:
    """The page: the vocabulary (id, colour, name, base / novel, detections) and every picture (relative links,
    so the page sits in the folder holding ``pictures/``) with its file name and detected names."""
    counts = Counter(d["category_name"] for d in detections)
    rows = "\n".join(
        f"<tr><td>{i}</td><td>{_swatch(n)}</td><td>{html.escape(n)}</td>"
        f"<td>{'base' if n in base else 'novel'}</td><td>{counts.get(n, 0)}</td></tr>"
        for i, n in enumerate(names)
    )
    by_stem: dict[str, Counter] = {}
    for d in detections:
        by_stem.setdefault(Path(d["file_name"]).stem, Counter())[d["category_name"]] += 1
    figures = []
    for p in pictures:
        found = by_stem.get(p.stem, Counter())
        caption = ", ".join(f"{html.escape(n)} ({c})" for n, c in sorted(found.items())) or "no detection"
        figures.append(
            f'<figure><img src="pictures/{html.escape(p.name)}" alt="{html.escape(p.stem)}">'
            f"<figcaption><b>{html.escape(p.stem)}</b>: {caption}</figcaption></figure>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(experiment)}: detections</title>
<style>body{{font-family:sans-serif;margin:1em}} figure{{display:inline-block;margin:.5em;vertical-align:top;
max-width:420px}} img{{max-width:100%}} td,th{{padding:0 .6em;text-align:left}}</style></head><body>
<h1>{html.escape(experiment)}: {len(detections)} detections above {score_thr:g} on {len(pictures)} images</h1>
<table><tr><th>id</th><th></th><th>name</th><th>split</th><th>detections</th></tr>
{rows}
</table>
<p>base: a class the detector was trained on with boxes; novel: any other name (embedded the same way).</p>
{chr(10).join(figures)}
</body></html>
"""
