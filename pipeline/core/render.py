"""Pictures of boxes on an image: detections with names and scores, or plain boxes of one colour.

:func:`draw_detections` draws each box in its class's colour (:func:`class_colour`: a fixed, saturated colour per
name, the same in every picture) with a label ``"<name> <score>"`` on a filled tag in that colour; the tag's text is
black or white, whichever contrasts more with the tag. A tag sits above its box when there is room, else just
inside the box's top edge, and is shifted left so that it never leaves the image; when that place covers a tag
already drawn, the next free one of: inside the top edge, below the box, inside the bottom edge, then further down
(:func:`place_labels`). :func:`draw_boxes` draws plain outlines (InstructCV's detection targets). Both take a
``PIL.Image`` and return a new RGB image of the same size; boxes are ``(x1, y1, x2, y2)`` pixels.

For display, :func:`display_objects` suppresses detections class-agnostically (one name per object: the strongest;
the other names on the same object become its runners-up) and :func:`upscaled` enlarges a small image by an integer
factor so that labels drawn on it are readable.
"""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

Box = Sequence[float]
Colour = tuple[int, int, int]


def class_colour(name: str) -> Colour:
    """A saturated, mid-bright RGB colour determined by ``name`` (its sha1 picks the hue)."""
    digest = hashlib.sha1(name.encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536
    lightness = 0.45 + 0.1 * digest[2] / 255
    r, g, b = colorsys.hls_to_rgb(hue, lightness, 0.85)
    return round(r * 255), round(g * 255), round(b * 255)


def text_colour(background: Colour) -> Colour:
    """Black or white, whichever has the larger WCAG contrast ratio with ``background``."""

    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    lum = 0.2126 * channel(background[0]) + 0.7152 * channel(background[1]) + 0.0722 * channel(background[2])
    return (0, 0, 0) if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else (255, 255, 255)


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at ``size`` px (a scalable one from Pillow 10.1 on)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def label_position(box: Box, tag: tuple[int, int], image_size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a ``tag`` (width, height) for ``box`` in an image of ``image_size`` (width, height):
    above the box when it fits, else inside its top edge; x clamped so that the tag stays in the image."""
    width, height = image_size
    x = min(max(int(box[0]), 0), max(width - tag[0], 0))
    y = int(box[1]) - tag[1]
    if y < 0:
        y = min(max(int(box[1]), 0), max(height - tag[1], 0))
    return x, y


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(
    boxes: Sequence[Box], tags: Sequence[tuple[int, int]], image_size: tuple[int, int]
) -> list[tuple[int, int]]:
    """Top-left corners of the ``tags`` (width, height) of ``boxes``, placed in order: the first of
    :func:`label_position`, inside the top edge, below the box, inside the bottom edge that covers no tag placed
    before; when all four do, the first place moved down until it is free (or the image ends)."""
    width, height = image_size
    placed: list[tuple[int, int, int, int]] = []
    corners = []
    for box, (w, h) in zip(boxes, tags, strict=True):
        x = min(max(int(box[0]), 0), max(width - w, 0))
        first = label_position(box, (w, h), image_size)
        candidates = [first[1], int(box[1]), int(box[3]), int(box[3]) - h]
        candidates = [min(max(y, 0), max(height - h, 0)) for y in candidates]
        free = [y for y in candidates if not any(_overlap((x, y, x + w, y + h), p) for p in placed)]
        if free:
            y = free[0]
        else:
            y = first[1]
            while y + h < height and any(_overlap((x, y, x + w, y + h), p) for p in placed):
                y += 1
        placed.append((x, y, x + w, y + h))
        corners.append((x, y))
    return corners


def draw_detections(
    image: Image.Image,
    boxes: Sequence[Box],
    names: Sequence[str],
    scores: Sequence[float] | None = None,
    line_width: int | None = None,
) -> Image.Image:
    """``image`` with every box outlined in its name's colour and labelled ``name`` (+ ``score`` to 2 decimals);
    the box of the highest score is drawn last (on top), and the labels are placed best first so that they do not
    cover each other (:func:`place_labels`). Names are drawn as given (plain text)."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    width, height = out.size
    line = line_width or max(1, round(min(width, height) / 160))
    label_font = font(max(10, round(min(width, height) / 28)))
    order = sorted(range(len(boxes)), key=lambda i: scores[i]) if scores is not None else list(range(len(boxes)))
    texts = [names[i] if scores is None else f"{names[i]} {scores[i]:.2f}" for i in range(len(boxes))]
    extents = [draw.textbbox((0, 0), t, font=label_font) for t in texts]
    tags = [(r - left + 4, b - t + 4) for left, t, r, b in extents]
    boxes = [tuple(float(v) for v in b) for b in boxes]
    placing = list(reversed(order))  # best first: the strongest label keeps its first place
    corners = dict(zip(placing, place_labels([boxes[i] for i in placing], [tags[i] for i in placing],
                                             (width, height)), strict=True))  # fmt: skip
    for i in order:
        x1, y1, x2, y2 = boxes[i]
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=class_colour(names[i]), width=line)
    for i in order:
        colour = class_colour(names[i])
        (x, y), tag, (left, top, _, _) = corners[i], tags[i], extents[i]
        draw.rectangle([x, y, x + tag[0] - 1, y + tag[1] - 1], fill=colour)
        draw.text((x + 2 - left, y + 2 - top), texts[i], fill=text_colour(colour), font=label_font)
    return out


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 when either is empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _inside(a: Box, b: Box) -> float:
    """The share of the smaller box's area inside the other."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if w > 0 and h > 0 and smaller > 0 else 0.0


def display_objects(
    boxes: Sequence[Box], names: Sequence[str], scores: Sequence[float], iou_thr: float = 0.5, inside_thr: float = 0.8
) -> list[tuple[int, list[tuple[str, float]]]]:
    """Class-agnostic suppression for display: detections best first, each kept unless it overlaps a kept one
    (IoU >= ``iou_thr``, or the same name with >= ``inside_thr`` of the smaller box inside the other). Returns, best
    first, ``(index of the kept detection, runners-up)``: the runners-up are the other names suppressed by it, each
    with its best score, best first (its own name excluded)."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept: list[int] = []
    runners: dict[int, dict[str, float]] = {}
    for i in order:
        owner = next(
            (k for k in kept if iou(boxes[i], boxes[k]) >= iou_thr
             or (names[i] == names[k] and _inside(boxes[i], boxes[k]) >= inside_thr)),
            None,
        )  # fmt: skip
        if owner is None:
            kept.append(i)
            runners[i] = {}
        elif names[i] != names[owner] and names[i] not in runners[owner]:
            runners[owner][names[i]] = scores[i]
    return [(k, list(runners[k].items())) for k in kept]


def upscaled(image: Image.Image, min_side: int) -> tuple[Image.Image, int]:
    """``image`` enlarged by the smallest integer factor (1 to 4) that makes its shorter side >= ``min_side``
    (bicubic), and the factor; an image already that large is returned as it is, factor 1."""
    factor = max(1, min(4, -(-min_side // max(1, min(image.size)))))
    if factor == 1:
        return image, 1
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.BICUBIC), factor


def draw_boxes(image: Image.Image, boxes: Sequence[Box], colour: Colour | str = "blue", width: int = 4) -> Image.Image:
    """``image`` with every box outlined in one ``colour`` (``width`` px), no labels."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    for x1, y1, x2, y2 in boxes:
        draw.rectangle([float(x1), float(y1), max(float(x1), float(x2)), max(float(y1), float(y2))],
                       outline=colour, width=width)  # fmt: skip
    return out
