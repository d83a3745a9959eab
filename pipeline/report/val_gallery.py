"""The report's val gallery: the same val images for every experiment, side by side in one picture: a row per
image, the ground truth in the first column and one column per experiment (its config-seed run), novel classes
tagged ``[novel]``.

:func:`pick_images` chooses the images once from the val annotation file: the ``count`` lowest image ids that hold
a novel box, topped up with the lowest other ids. In a run's cell, its detections on the image with score >=
threshold are suppressed class-agnostically for display (one name per object,
:func:`pipeline.core.render.display_objects`) and the best objects are drawn, as many as the image has ground-truth
boxes. Each cell is the image enlarged to a readable size (:func:`pipeline.core.render.upscaled`, shorter side >=
:data:`CELL_MIN_SIDE`) under a caption strip naming its column. Category ids below ``num_base`` are base, the
others novel (as ``pipeline.evaluate``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from pipeline.core import atomic
from pipeline.core.images import decode, image_path
from pipeline.core.render import display_objects, draw_detections, font, upscaled
from pipeline.formats import annotation_file
from pipeline.formats import detections as detections_file
from pipeline.report.html import md_text

CAPTION_PX = 24
CELL_MIN_SIDE = 360
GALLERY = "val_gallery.png"


def pick_images(annotations: dict, num_base: int, count: int) -> list[dict]:
    """``count`` image records of ``annotations``: first those with a novel box, then the others, each by id."""
    novel_images = {a["image_id"] for a in annotations["annotations"] if a["category_id"] >= num_base}
    images = sorted(annotations["images"], key=lambda im: (im["id"] not in novel_images, im["id"]))
    return images[:count]


def _label(name: str, category_id: int, num_base: int) -> str:
    return name if category_id < num_base else f"{name} [novel]"


def _xyxy(bbox, factor: int = 1) -> list[float]:
    x, y, w, h = (float(v) * factor for v in bbox)
    return [x, y, x + w, y + h]


def _captioned(image: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (image.width, image.height + CAPTION_PX), "white")
    out.paste(image, (0, CAPTION_PX))
    ImageDraw.Draw(out).text((4, 4), text, fill="black", font=font(CAPTION_PX - 8))
    return out


def shown_detections(detections: Sequence[dict], names: dict, limit: int, threshold: float) -> list[dict]:
    """The detections drawn in a cell: those with score >= ``threshold``, one per object (class-agnostic display
    suppression), the best ``limit``."""
    kept = [d for d in detections if d["score"] >= threshold]
    objects = display_objects(
        [_xyxy(d["bbox"]) for d in kept], [names.get(d["category_id"], str(d["category_id"])) for d in kept],
        [d["score"] for d in kept],
    )  # fmt: skip
    return [kept[i] for i, _ in objects[:limit]]


def gallery_picture(
    annotations: dict,
    images: list[dict],
    image_dir: Path,
    runs: dict[str, list[dict]],
    num_base: int,
    threshold: float,
) -> Image.Image:
    """One picture: a row per image of ``images``; the ground truth, then one column per run of ``runs`` (name ->
    COCO result records): :func:`shown_detections` with as many objects as the image's ground-truth boxes. Every
    cell is as wide as the widest enlarged image."""
    names = {c["id"]: c["name"] for c in annotations["categories"]}
    gts, dets = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for a in annotations["annotations"]:
        gts[a["image_id"]].append(a)
    for run, records in runs.items():
        for d in records:
            dets[run][d["image_id"]].append(d)
    rows = []
    for im in images:
        path = image_path(im, image_dir)
        if not path.is_file():
            raise ValueError(f"{path}: image {im['id']} of the val gallery is missing")
        picture, factor = upscaled(decode(path), CELL_MIN_SIDE)
        truth = gts[im["id"]]
        cells = [
            _captioned(
                draw_detections(
                    picture, [_xyxy(a["bbox"], factor) for a in truth],
                    [_label(names[a["category_id"]], a["category_id"], num_base) for a in truth],
                ),
                f"{path.name}: ground truth ({len(truth)})",
            )
        ]  # fmt: skip
        for run in runs:
            shown = shown_detections(dets[run][im["id"]], names, len(truth), threshold)
            drawn = draw_detections(
                picture, [_xyxy(d["bbox"], factor) for d in shown],
                [_label(names.get(d["category_id"], str(d["category_id"])), d["category_id"], num_base)
                 for d in shown],
                [d["score"] for d in shown],
            )  # fmt: skip
            cells.append(_captioned(drawn, f"{run}: top {len(shown)}"))
        rows.append(cells)
    width = max((c.width for r in rows for c in r), default=1)
    columns = 1 + len(runs)
    out = Image.new("RGB", (columns * width, max(1, sum(r[0].height for r in rows))), "white")
    y = 0
    for cells in rows:
        for k, cell in enumerate(cells):
            out.paste(cell, (k * width, y))
        y += cells[0].height
    return out


def write_gallery(
    annotations_path: Path,
    image_dir: Path,
    evaluate_dir: Path,
    experiments: list[str],
    num_base: int,
    out_dir: Path,
    count: int = 6,
    threshold: float = 0.0,
) -> list[str]:
    """Write ``<out_dir>/val_gallery.png``: ground truth and every run of ``experiments`` (its
    ``<evaluate_dir>/<run>/detections.json``) side by side on the same val images; return the summary's markdown
    lines."""
    annotations = annotation_file.load(annotations_path)
    images = pick_images(annotations, num_base, count)
    runs = {e: detections_file.load(evaluate_dir / e / "detections.json") for e in experiments}
    picture = gallery_picture(annotations, images, image_dir, runs, num_base, threshold)
    with atomic.atomic_path(out_dir / GALLERY, suffix=".png") as tmp:
        picture.save(tmp, format="PNG", optimize=True)
    return [
        f"Val images {', '.join(str(im['id']) for im in images)} of {md_text(annotations_path.name)}, one per row: "
        f"ground truth, then {', '.join(md_text(e) for e in experiments)} (each experiment's run with the "
        f"config's seed): its best detections with score >= {threshold:g}, one name per object, as many as the "
        "image's ground-truth boxes. Novel classes are tagged \\[novel\\]; each class has one colour in every "
        "picture.",
        "",
        f"![val gallery: ground truth | {md_text(' | '.join(experiments))}]({GALLERY})",
        "",
    ]
