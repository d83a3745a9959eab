"""A user's COCO-format dataset (``dataset: custom``): the checks that refuse bad input before any job runs.

Snakemake runs :func:`check_dataset` on both split files while it reads the config (workflow/config_check.py), and
the annotations stage runs :func:`check_split_file` again on the file it remaps. Only the JSON files are read and
the image files are looked up, never decoded, so a COCO-sized dataset is checked in seconds.

Besides :func:`pipeline.formats.annotation_file.validate` (unique ids and category names, known references,
finite boxes), a split file must

* name its categories distinctly: two names that differ only by case or spacing (``Red Circle``,
  ``red  circle``) are refused naming both (:func:`pipeline.core.vocab.check_distinct`);
* give every image a ``file_name`` (subfolders allowed; no absolute path, no ``..`` out of the folder) that exists
  under the split's image folder, and a positive ``width`` and ``height``;
* keep every box inside its image: ``x, y >= -1`` and ``x + w <= width + 1``, ``y + h <= height + 1``
  (:data:`BOX_TOLERANCE`: one pixel for rounded coordinates);
* not be empty: at least one image, and at least one non-crowd box of a base class (train) or of any class of the
  split (val);
* fit the split (novel names, optional base names): :func:`pipeline.core.vocab.custom_split`, which names an unknown
  name's closest categories.

Both files must list the same categories (same ids, same names). ``iscrowd``, ``area`` and ``segmentation`` are
optional. Errors are ``ValueError``\\ s naming the file and the image, annotation or name:
:class:`CustomDatasetError` here, :class:`~pipeline.formats.annotation_file.AnnotationError` for the structure,
:class:`~pipeline.core.vocab.VocabError` for the split.

:func:`check_dataset_cached` keeps the outcome of a passed check in a small JSON file and skips the check while the
annotation files (path, size, modification time), the image folders (path, modification time) and the split's
names stay the same: Snakemake parses the workflow again in every cluster job, and a COCO-sized file takes seconds
and gigabytes to load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core import atomic, vocab
from pipeline.core.images import relative_file
from pipeline.formats.annotation_file import load

Json = dict[str, Any]
SPLITS = ("train", "val")
BOX_TOLERANCE = 1.0


class CustomDatasetError(ValueError):
    """A custom dataset that cannot be used; the message names the file and the image, annotation or name."""


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def check_images(data: Json, image_dir: str | Path, source: str) -> None:
    """Every image of ``data`` has a ``file_name`` that exists under ``image_dir`` and a positive ``width`` and
    ``height``; raises :class:`CustomDatasetError` naming the first bad image (and how many files are missing)."""
    root = os.fspath(image_dir)
    if not os.path.isdir(root):
        raise CustomDatasetError(f"{source}: image folder {root} does not exist")
    missing = []
    for im in data["images"]:
        name = im.get("file_name")
        if not isinstance(name, str) or not name:
            raise CustomDatasetError(f"{source}: image {im['id']} has no 'file_name'")
        try:
            relative_file(name, f"{source}: image {im['id']}")
        except ValueError as err:
            raise CustomDatasetError(str(err)) from None
        for key in ("width", "height"):
            if not _positive(im.get(key)):
                value = im.get(key)
                raise CustomDatasetError(f"{source}: image {im['id']} ({name}) has no positive '{key}': {value!r}")
        if not os.path.isfile(os.path.join(root, name)):
            missing.append(im)
    if missing:
        first = missing[0]
        raise CustomDatasetError(
            f"{source}: {len(missing)} image file(s) missing, first: image {first['id']} "
            f"{os.path.join(root, first['file_name'])}"
        )


def check_boxes(data: Json, source: str, tolerance: float = BOX_TOLERANCE) -> None:
    """Every box lies inside its image, up to ``tolerance`` pixels (images already checked by
    :func:`check_images`); raises :class:`CustomDatasetError` naming the annotation and the image."""
    images = {im["id"]: im for im in data["images"]}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        im = images[ann["image_id"]]
        width, height = im["width"], im["height"]
        if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
            raise CustomDatasetError(
                f"{source}: annotation {ann['id']} has a box {ann['bbox']} [x, y, w, h] outside its image "
                f"{im['id']} ({im['file_name']}, {width}x{height})"
            )


def check_not_empty(data: Json, split: vocab.Split, role: str, source: str) -> None:
    """The ``role`` split (train or val) has images and a non-crowd box to train on (a base class) or to evaluate
    (any class of ``split``); raises :class:`CustomDatasetError` naming the file."""
    if not data["images"]:
        raise CustomDatasetError(f"{source}: the {role} split is empty: no images")
    wanted = set(split.bases if role == "train" else split.names)
    ids = {c["id"] for c in data["categories"] if c["name"] in wanted}
    if not any(a["category_id"] in ids and not a.get("iscrowd") for a in data["annotations"]):
        what = "a base class: nothing to train on" if role == "train" else "a split class: nothing to evaluate"
        raise CustomDatasetError(f"{source}: the {role} split is empty: no (non-crowd) box of {what}")


def check_split_file(
    path: str | Path, image_dir: str | Path, role: str, novel: Sequence[str], base: Sequence[str] | None = None
) -> tuple[Json, vocab.Split]:
    """Load the ``role`` split file ``path`` and run every check of the module docstring on it.

    Returns:
        the file's dict (unchanged) and its split (:func:`pipeline.core.vocab.custom_split`).
    """
    if role not in SPLITS:
        raise ValueError(f"split role {role!r}: expected one of {list(SPLITS)}")
    source = str(path)
    if not Path(path).is_file():
        raise CustomDatasetError(f"{source}: the {role} annotation file does not exist")
    data = load(Path(path))
    vocab.check_distinct((c["name"] for c in data["categories"]), source)
    check_images(data, image_dir, source)
    check_boxes(data, source)
    split = vocab.custom_split(novel, base, data["categories"], source)
    check_not_empty(data, split, role, source)
    return data, split


def check_same_categories(train: Json, val: Json, train_source: str, val_source: str) -> None:
    """Both files list the same categories: same ids with the same names."""
    a = {c["id"]: c["name"] for c in train["categories"]}
    b = {c["id"]: c["name"] for c in val["categories"]}
    for cid in sorted(a.keys() | b.keys()):
        if a.get(cid) != b.get(cid):
            raise CustomDatasetError(
                f"{train_source} and {val_source} list different categories: id {cid} is "
                f"{a.get(cid)!r} in the first, {b.get(cid)!r} in the second"
            )


def check_dataset(
    annotations: Mapping[str, str | Path],
    images: Mapping[str, str | Path],
    novel: Sequence[str],
    base: Sequence[str] | None = None,
) -> vocab.Split:
    """Check both splits (``annotations`` and ``images`` keyed ``train`` and ``val``) and return the split."""
    checked = {role: check_split_file(annotations[role], images[role], role, novel, base) for role in SPLITS}
    check_same_categories(checked["train"][0], checked["val"][0], str(annotations["train"]), str(annotations["val"]))
    return checked["val"][1]


def _fingerprint(
    annotations: Mapping[str, str | Path],
    images: Mapping[str, str | Path],
    novel: Sequence[str],
    base: Sequence[str] | None,
) -> dict:
    """What a passed check depends on (raises ``OSError`` when a file or folder is missing)."""

    def stat(path: str | Path, size: bool) -> list:
        st = os.stat(path)
        return [os.path.abspath(path), *([st.st_size] if size else []), st.st_mtime_ns]

    return {
        "annotations": {s: stat(annotations[s], True) for s in SPLITS},
        "images": {s: stat(images[s], False) for s in SPLITS},
        "novel": list(novel),
        "base": list(base) if base else None,
    }


def check_dataset_cached(
    annotations: Mapping[str, str | Path],
    images: Mapping[str, str | Path],
    novel: Sequence[str],
    base: Sequence[str] | None,
    cache: Path,
) -> vocab.Split:
    """:func:`check_dataset`, skipped when ``cache`` records a passed check of the same inputs (see the module
    docstring); a passed check is recorded there. An unreadable cache is ignored."""
    try:
        key = _fingerprint(annotations, images, novel, base)
    except OSError:
        key = None  # check_dataset names what is missing
    if key is not None and cache.is_file():
        try:
            stored = atomic.read_json(cache)
        except (OSError, ValueError):
            stored = None
        if isinstance(stored, dict) and stored.get("key") == key:
            return vocab.Split(tuple(stored["bases"]), tuple(stored["novels"]))
    split = check_dataset(annotations, images, novel, base)
    if key is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(cache, {"key": key, "bases": list(split.bases), "novels": list(split.novels)})
    return split
