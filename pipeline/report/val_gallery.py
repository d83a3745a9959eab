"""The report's val gallery: for each run, a few val images with the ground truth (left) and the run's detections
(right) side by side, novel classes tagged ``[novel]``.

:func:`pick_images` chooses the images once from the val annotation file (the same ones for every run): the
``count`` lowest image ids that hold a novel box, topped up with the lowest other ids. :func:`gallery_picture`
draws one run's picture: one row per image, ``[ground truth | detections]``: the run's
highest-scoring detections on that image, as many as it has ground-truth boxes, those with score >= threshold; each
half the image at its own size (:func:`pipeline.core.render.draw_detections`), under a caption strip naming the side.
Category ids below ``num_base`` are base, the others novel (as ``pipeline.evaluate``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw

from pipeline.core import atomic
from pipeline.core.images import image_path
from pipeline.core.render import draw_detections
from pipeline.formats import annotation_file
from pipeline.formats import detections as detections_file

CAPTION_PX = 22


def pick_images(annotations: dict, num_base: int, count: int) -> list[dict]:
    """``count`` image records of ``annotations``: first those with a novel box, then the others, each by id."""
    novel_images = {a["image_id"] for a in annotations["annotations"] if a["category_id"] >= num_base}
    images = sorted(annotations["images"], key=lambda im: (im["id"] not in novel_images, im["id"]))
    return images[:count]


def _label(name: str, category_id: int, num_base: int) -> str:
    return name if category_id < num_base else f"{name} [novel]"


def _xyxy(bbox) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def _captioned(image: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (image.width, image.height + CAPTION_PX), "white")
    out.paste(image, (0, CAPTION_PX))
    ImageDraw.Draw(out).text((4, 4), text, fill="black")
    return out


def gallery_picture(
    annotations: dict,
    images: list[dict],
    image_dir: Path,
    detections: list[dict],
    num_base: int,
    threshold: float,
) -> Image.Image:
    """One picture: a row per image of ``images``, ground truth left and ``detections`` (COCO result records) right:
    the top-scoring ones, as many as the image's ground-truth boxes, with score >= ``threshold``; width 2 x the
    widest image, height the sum of the rows."""
    names = {c["id"]: c["name"] for c in annotations["categories"]}
    gts, dets = defaultdict(list), defaultdict(list)
    for a in annotations["annotations"]:
        gts[a["image_id"]].append(a)
    for d in sorted(detections, key=lambda d: -d["score"]):
        if d["score"] >= threshold and len(dets[d["image_id"]]) < len(gts[d["image_id"]]):
            dets[d["image_id"]].append(d)
    rows = []
    for im in images:
        path = image_path(im, image_dir)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image {im['id']} of the val gallery is missing")
        picture = Image.open(path).convert("RGB")
        left = draw_detections(
            picture,
            [_xyxy(a["bbox"]) for a in gts[im["id"]]],
            [_label(names[a["category_id"]], a["category_id"], num_base) for a in gts[im["id"]]],
        )
        right = draw_detections(
            picture,
            [_xyxy(d["bbox"]) for d in dets[im["id"]]],
            [_label(names.get(d["category_id"], str(d["category_id"])), d["category_id"], num_base)
             for d in dets[im["id"]]],
            [d["score"] for d in dets[im["id"]]],
        )  # fmt: skip
        rows.append(
            (
                _captioned(left, f"{path.name}: ground truth ({len(gts[im['id']])})"),
                _captioned(right, f"top {len(dets[im['id']])} detections (score >= {threshold:g})"),
            )
        )
    width = max((r[0].width for r in rows), default=1)
    out = Image.new("RGB", (2 * width, max(1, sum(r[0].height for r in rows))), "white")
    y = 0
    for left, right in rows:
        out.paste(left, (0, y))
        out.paste(right, (width, y))
        y += left.height
    return out


def write_gallery(
    annotations_path: Path,
    image_dir: Path,
    evaluate_dir: Path,
    experiments: list[str],
    num_base: int,
    out_dir: Path,
    count: int = 3,
    threshold: float = 0.0,
) -> list[str]:
    """Write ``<out_dir>/val_gallery_<run>.png`` per run (its ``<evaluate_dir>/<run>/detections.json``); return
    the summary's markdown lines."""
    annotations = annotation_file.load(annotations_path)
    images = pick_images(annotations, num_base, count)
    lines = [
        f"Val images {', '.join(str(im['id']) for im in images)} of `{annotations_path.name}`: ground truth left, "
        f"the run's top detections right (as many as the image's ground-truth boxes, score >= {threshold:g}); novel "
        "classes are tagged `[novel]`, each class has one colour in every picture.",
        "",
    ]
    for e in experiments:
        source = evaluate_dir / e / "detections.json"
        detections = detections_file.load(source)
        name = f"val_gallery_{e}.png"
        picture = gallery_picture(annotations, images, image_dir, detections, num_base, threshold)
        with atomic.atomic_path(out_dir / name, suffix=".png") as tmp:
            picture.save(tmp, format="PNG")
        lines += [f"### {e}", "", f"![{e}: ground truth | detections]({name})", ""]
    return lines
