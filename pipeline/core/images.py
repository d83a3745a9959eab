"""The images of a split, and the one policy for images that cannot be read.

Every stage that reads the images of an annotation file (proposals predict, the OAKE extractors, train predict)
lists them with :func:`list_images` and reads them under one :class:`ImagePolicy` ``on_bad_image`` (config key
``oake.on_bad_image``, option ``--on-bad-image``):

* ``error``: the stage stops with a ``ValueError`` naming the image file and id;
* ``skip``: a warning naming the image file and id is logged and the image is left out of the stage's work
  (each stage records what a skipped image leaves behind: see its docstring).

An image is unreadable when opening or decoding it raises one of :data:`BAD_IMAGE_ERRORS` or the loader returns
nothing (mmcv's ``LoadImageFromFile`` asserts that it decoded something).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipeline.core import atomic

log = logging.getLogger(__name__)

ON_BAD_IMAGE = ("error", "skip")
BAD_IMAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, AssertionError)
T = TypeVar("T")


class BadImageError(ValueError):
    """An image that cannot be read, under the policy ``error``; the message names the file and the image id."""


@dataclass(frozen=True)
class ImageItem:
    image_id: int
    path: Path


def image_records(annotation_file: str | Path) -> list[dict[str, Any]]:
    """The ``images`` list of a COCO- or LVIS-format file, each with an ``id``.

    Raises:
        ValueError: the file is unreadable, has no ``images`` list, or an image record has no ``id``
            (the message names the file and the key).
    """
    data = atomic.read_json(annotation_file)
    if not isinstance(data, Mapping) or "images" not in data:
        raise ValueError(f"{annotation_file}: no 'images' key (not a COCO/LVIS annotation file?)")
    records = data["images"]
    if not isinstance(records, list):
        raise ValueError(f"{annotation_file}: 'images' is a {type(records).__name__}, expected a list of records")
    for k, im in enumerate(records):
        if not isinstance(im, Mapping) or "id" not in im:
            raise ValueError(f"{annotation_file}: 'images' entry #{k} has no 'id'")
    return records


def image_relpath(record: Mapping[str, Any]) -> str:
    """The file of one image record of a COCO- or LVIS-format file, relative to the split's image folder.

    ``file_name`` as it is. LVIS records have no file name: their ``coco_url`` ends with the COCO split folder and
    the file (``.../train2017/000000000139.jpg``), and the image folder is one split folder beside it, so the file
    is ``../train2017/000000000139.jpg`` (LVIS v1 val holds COCO train2017 images as well as val2017 ones).

    Raises:
        ValueError: the record has neither ``file_name`` nor a ``coco_url`` with a folder and a file.
    """
    if record.get("file_name"):
        return str(record["file_name"])
    parts = str(record.get("coco_url", "")).rstrip("/").split("/")
    if len(parts) < 2 or not parts[-1]:
        raise ValueError(f"image {record.get('id')} has neither file_name nor a coco_url with a folder and a file")
    return f"../{parts[-2]}/{parts[-1]}"


def image_path(record: Mapping[str, Any], image_dir: str | Path) -> Path:
    """The file of one image record under the split's image folder ``image_dir`` (:func:`image_relpath`)."""
    return Path(image_dir) / image_relpath(record)


def list_images(annotation_file: str | Path, image_dir: str | Path) -> list[ImageItem]:
    """Every image of an (original, unfiltered) COCO- or LVIS-format file, ascending id, at :func:`image_path`.

    Raises:
        ValueError: see :func:`image_records`; or an image has neither ``file_name`` nor ``coco_url``.
    """
    items = []
    for im in image_records(annotation_file):
        try:
            items.append(ImageItem(int(im["id"]), image_path(im, image_dir)))
        except ValueError as err:
            raise ValueError(f"{annotation_file}: {err}") from None
    return sorted(items, key=lambda it: it.image_id)


class ImagePolicy:
    """The bad-image policy ``on_bad_image`` (``error`` or ``skip``) of one stage run.

    ``skipped`` lists the images skipped so far as ``{"image_id", "reason"}`` (the reason names the file).
    """

    def __init__(self, on_bad_image: str) -> None:
        if on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(f"on_bad_image {on_bad_image!r}: expected one of {list(ON_BAD_IMAGE)}")
        self.on_bad_image = on_bad_image
        self.skipped: list[dict[str, Any]] = []

    def bad(self, item: ImageItem, reason: str) -> str:
        """Apply the policy to ``item``, which could not be read because of ``reason``.

        Returns the message naming the file and the image id (under ``skip``, after logging it as a warning and
        adding it to ``skipped``).

        Raises:
            BadImageError: under ``error``.
        """
        message = f"{item.path}: unreadable image, id {item.image_id} ({reason})"
        if self.on_bad_image == "error":
            raise BadImageError(message)
        log.warning("skipping %s", message)
        self.skipped.append({"image_id": int(item.image_id), "reason": message})
        return message

    def load(self, item: ImageItem, loader: Callable[[ImageItem], T | None]) -> T | None:
        """``loader(item)`` under the policy: an unreadable image (an error of :data:`BAD_IMAGE_ERRORS`, or
        ``None`` from ``loader``) raises :class:`BadImageError` (``error``) or gives ``None`` (``skip``)."""
        try:
            out = loader(item)
        except BAD_IMAGE_ERRORS as exc:
            self.bad(item, f"{type(exc).__name__}: {exc}")
            return None
        if out is None:
            self.bad(item, "nothing decoded")
        return out


def read_rgb(item: ImageItem):
    """The image as a fully decoded RGB ``PIL.Image`` (raises one of :data:`BAD_IMAGE_ERRORS` if unreadable)."""
    from PIL import Image

    with Image.open(item.path) as im:
        return im.convert("RGB")


def mmcv_test_pipeline(steps: Sequence[Mapping], policy: ImagePolicy) -> Callable[[ImageItem], dict | None]:
    """An mmcv test pipeline config (first step ``LoadImageFromFile``) as a function of an :class:`ImageItem`:
    the loading step runs under ``policy`` (:meth:`ImagePolicy.load`), then the other steps; ``None`` for a
    skipped image.
    """
    from mmcv.transforms import Compose

    if not steps or steps[0].get("type") != "LoadImageFromFile":
        first = steps[0].get("type") if steps else None
        raise ValueError(f"test pipeline starts with {first!r}, expected LoadImageFromFile")
    loader = Compose([dict(steps[0])])
    rest = Compose([dict(s) for s in steps[1:]])

    def run(item: ImageItem) -> dict | None:
        results = policy.load(item, lambda it: loader(dict(img_path=str(it.path), img_id=it.image_id)))
        return None if results is None else rest(results)

    return run
