"""The report's detection gallery: the pictures of ``pipeline.detect`` (a trained experiment with a free
vocabulary), linked from ``summary.md``.

:func:`gallery_lines` reads ``<detect dir>/detections.json`` (records with ``category_name`` and ``file_name``) and
lists ``<detect dir>/pictures/*.jpg``; the links are relative to the report folder and percent-encoded, every name
is plain text (:func:`pipeline.report.html.md_text`); ``summary.html`` embeds the pictures.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from pipeline.formats import detections as detections_file
from pipeline.report.html import md_text


def gallery_lines(detect_dir: Path, out_dir: Path) -> list[str]:
    """Markdown: one line of counts per name, then every picture (at most 12), linked relative to ``out_dir``."""
    detections = detections_file.load(detect_dir / "detections.json")
    if any("category_name" not in d for d in detections):
        raise ValueError(f"{detect_dir / 'detections.json'}: not a detections file of pipeline.detect")
    pictures = sorted((detect_dir / "pictures").glob("*.jpg"))
    rel = Path(os.path.relpath(detect_dir, out_dir)).as_posix()
    counts = Counter(d["category_name"] for d in detections)
    lines = [
        f"{md_text(detect_dir.name)} with a free vocabulary: {len(detections)} detections on {len(pictures)} "
        f"images (all pictures: [index.html]({quote(rel)}/index.html)). Detections per name:",
        "",
        ", ".join(f"{md_text(name)} {n}" for name, n in counts.most_common()) or "(none)",
        "",
    ]
    lines += [f"![{md_text(p.stem)}]({quote(f'{rel}/pictures/{p.name}')})" for p in pictures[:12]]
    return lines
