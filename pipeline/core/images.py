"""The images of a split, the one image decoder, and the one policy for images that cannot be read.

Every stage that reads images (proposals predict, the OAKE extractors, train predict, detect, the report's galleries,
export_instructcv; detector and RPN training through the ``ReadImage`` transform) decodes them with :func:`decode`:

* the header is read first and an image of more than ``max_pixels`` pixels (config key ``max_image_pixels``,
  option ``--max-image-pixels``) is refused before anything is decoded;
* the EXIF orientation is applied (a photo taken upright is read upright, the boxes found on it are drawn on it);
* every mode becomes 8-bit RGB the same way: 16-bit and 32-bit integer grey (``I;16``, ``I``) keeps its high byte
  (65535 -> 255, as OpenCV reads 16-bit files), float grey (``F``) is clipped to 0..255, alpha is dropped,
  palette, grey, CMYK and YCbCr are converted by PIL's colour conversion;
* every failure (an empty or truncated file, a file no decoder knows, too many pixels) raises
  :class:`UnreadableImage`, a ``ValueError`` naming the file.

Stages list a split's images with :func:`list_images` and read them under one :class:`ImagePolicy`, the bad-image
policy ``on_bad_image`` (option ``--on-bad-image``) with the pixel limit:

* ``error``: the stage stops with a ``ValueError`` naming the image file and id;
* ``skip``: a warning naming the image file and id is logged and the image is left out of the stage's work
  (each stage records what a skipped image leaves behind: see its docstring).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.core import atomic

if TYPE_CHECKING:
    from PIL import Image as PILImage

log = logging.getLogger(__name__)

ON_BAD_IMAGE = ("error", "skip")
#: the default pixel limit (config key ``max_image_pixels``): 100 megapixels, a 10000 x 10000 image (300 MB as RGB)
MAX_IMAGE_PIXELS = 100_000_000
BAD_IMAGE_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, AssertionError)
T = TypeVar("T")


class BadImageError(ValueError):
    """An image that cannot be read, under the policy ``error``; the message names the file and the image id."""


class UnreadableImage(ValueError):
    """An image file :func:`decode` cannot read: the message names the file, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: unreadable image ({reason})")
        self.path, self.reason = Path(path), reason


@dataclass(frozen=True)
class ImageItem:
    image_id: int
    path: Path


@contextmanager
def _project_pixel_limit():
    """PIL's own decompression-bomb check off for one open (the project's limit, checked on the header, replaces
    it; PIL's would refuse images between its limit and a larger ``max_pixels`` a user asked for)."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _to_rgb8(im: PILImage.Image) -> PILImage.Image:
    """``im`` (decoded) as 8-bit RGB: integer grey keeps its high byte of 16 bits, float grey is clipped to
    0..255, alpha is dropped, every other mode goes through PIL's conversion."""
    import numpy as np
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        values = np.asarray(im)
        if im.mode == "F":
            grey = np.clip(np.nan_to_num(values), 0, 255).astype(np.uint8)
        else:
            grey = (np.clip(values.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return im.convert("RGB")


def decode(path: str | Path, max_pixels: int | None = MAX_IMAGE_PIXELS) -> PILImage.Image:
    """The image file ``path`` as a decoded 8-bit RGB ``PIL.Image``, upright (EXIF orientation applied).

    The header is read first: an image of more than ``max_pixels`` pixels (``None``: no limit) is refused before
    any pixel is decoded.

    Raises:
        UnreadableImage: the file is missing, empty, truncated, of no known format, too large or otherwise
            undecodable (a ``ValueError`` naming the file and the reason).
    """
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with _project_pixel_limit():
            im = Image.open(path)
        with im:
            width, height = im.size
            if max_pixels is not None and width * height > max_pixels:
                raise UnreadableImage(
                    path,
                    f"{width} x {height} = {width * height} pixels, more than max_image_pixels {max_pixels}; "
                    "refused before decoding",
                )
            im.load()
            upright = ImageOps.exif_transpose(im) or im
            return _to_rgb8(upright)
    except UnreadableImage:
        raise
    except (*BAD_IMAGE_ERRORS, Image.DecompressionBombError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise UnreadableImage(path, reason) from exc


def read_rgb(item: ImageItem, max_pixels: int | None = MAX_IMAGE_PIXELS) -> PILImage.Image:
    """``item``'s image file through :func:`decode`."""
    return decode(item.path, max_pixels)


def read_bgr(path: str | Path, max_pixels: int | None = MAX_IMAGE_PIXELS):
    """The image file through :func:`decode` as a ``uint8 [H, W, 3]`` BGR array (the layout of mmcv's loaders)."""
    import numpy as np

    return np.ascontiguousarray(np.asarray(decode(path, max_pixels))[:, :, ::-1])


def max_pixels_option():
    """The ``--max-image-pixels`` option field of a stage that reads images (config key ``max_image_pixels``)."""
    from pipeline.core.options import option

    return option(
        MAX_IMAGE_PIXELS,
        help="an image of more pixels (width x height, read from its header) is unreadable: refused before decoding, "
        "under the bad-image policy",
    )


def relative_file(name: str, what: str) -> str:
    """``name``, a file path from an annotation file, checked to stay inside the image folder it is relative to.

    Raises:
        ValueError: ``name`` is absolute (POSIX or Windows) or climbs out with ``..`` (names ``what``, e.g. the
            image id, and the name).
    """
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\")):
        raise ValueError(f"{what}: file_name {name!r} is an absolute path (it must be relative to the image folder)")
    depth = 0
    for part in name.replace("\\", "/").split("/"):
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            raise ValueError(f"{what}: file_name {name!r} leads out of the image folder ('..')")
    return name


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

    ``file_name`` as it is, when it stays inside the folder (:func:`relative_file`). LVIS records have no file
    name: their ``coco_url`` ends with the COCO split folder and the file (``.../train2017/000000000139.jpg``), and
    the image folder is one split folder beside it, so the file is ``../train2017/000000000139.jpg`` (LVIS v1 val
    holds COCO train2017 images as well as val2017 ones).

    Raises:
        ValueError: the record has neither ``file_name`` nor a ``coco_url`` with a folder and a file, or its
            ``file_name`` is absolute or leads out of the folder (names the image id).
    """
    if record.get("file_name"):
        return relative_file(str(record["file_name"]), f"image {record.get('id')}")
    parts = str(record.get("coco_url", "")).rstrip("/").split("/")
    if len(parts) < 2 or parts[-1] in ("", ".", "..") or parts[-2] in ("", ".", ".."):
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
    """The bad-image policy ``on_bad_image`` (``error`` or ``skip``) of one stage run, with its pixel limit
    ``max_pixels`` (:func:`decode`).

    ``skipped`` lists the images skipped so far as ``{"image_id", "reason"}`` (the reason names the file).
    """

    def __init__(self, on_bad_image: str, max_pixels: int | None = MAX_IMAGE_PIXELS) -> None:
        if on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(f"on_bad_image {on_bad_image!r}: expected one of {list(ON_BAD_IMAGE)}")
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_image_pixels {max_pixels}: expected a positive number of pixels")
        self.on_bad_image, self.max_pixels = on_bad_image, max_pixels
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
            self.bad(item, failure(exc))
            return None
        if out is None:
            self.bad(item, "nothing decoded")
        return out

    def read(self, item: ImageItem) -> PILImage.Image | None:
        """``item``'s image (:func:`decode` with this policy's pixel limit) under the policy (:meth:`load`)."""
        return self.load(item, lambda it: decode(it.path, self.max_pixels))


def failure(exc: BaseException) -> str:
    """Why an image could not be read, in a few words (the reason of :class:`UnreadableImage`)."""
    if isinstance(exc, UnreadableImage):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"
