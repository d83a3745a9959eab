"""Pictures of boxes on an image: detections with names and scores, or plain boxes of one colour.

:func:`draw_detections` draws each box in its class's colour (:func:`class_colour`: a fixed, saturated colour per
name, the same in every picture) with a label ``"<name> <score>"`` on a filled tag in that colour; the tag's text is
black or white, whichever contrasts more with the tag. A tag sits above its box when there is room, else just
inside the box's top edge, and is shifted left so that it never leaves the image. :func:`draw_boxes` draws plain
outlines (InstructCV's detection targets). Both take a ``PIL.Image`` and return a new RGB image of the same size;
boxes are ``(x1, y1, x2, y2)`` pixels.
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


def _font(size: int) -> ImageFont.ImageFont:
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


def draw_detections(
    image: Image.Image,
    boxes: Sequence[Box],
    names: Sequence[str],
    scores: Sequence[float] | None = None,
    line_width: int | None = None,
) -> Image.Image:
    """``image`` with every box outlined in its name's colour and labelled ``name`` (+ ``score`` to 2 decimals);
    the box of the highest score is drawn last (on top)."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    width, height = out.size
    line = line_width or max(1, round(min(width, height) / 160))
    font = _font(max(10, round(min(width, height) / 28)))
    order = sorted(range(len(boxes)), key=lambda i: scores[i]) if scores is not None else range(len(boxes))
    for i in order:
        colour = class_colour(names[i])
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=colour, width=line)
        text = names[i] if scores is None else f"{names[i]} {scores[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag = (right - left + 4, bottom - top + 4)
        x, y = label_position((x1, y1, x2, y2), tag, (width, height))
        draw.rectangle([x, y, x + tag[0] - 1, y + tag[1] - 1], fill=colour)
        draw.text((x + 2 - left, y + 2 - top), text, fill=text_colour(colour), font=font)
    return out


def draw_boxes(image: Image.Image, boxes: Sequence[Box], colour: Colour | str = "blue", width: int = 4) -> Image.Image:
    """``image`` with every box outlined in one ``colour`` (``width`` px), no labels."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    for x1, y1, x2, y2 in boxes:
        draw.rectangle([float(x1), float(y1), max(float(x1), float(x2)), max(float(y1), float(y2))],
                       outline=colour, width=width)  # fmt: skip
    return out
