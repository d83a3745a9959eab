"""The one home of the dry run's sizes (config key ``dry_run``, option ``--dry-run`` of the stages) and image set.

A dry run keeps every stage's code path and shrinks its work; every stage reads its sizes from here:

* images: the dry-run image set of a split is the first :data:`IMAGES` image records of the split's annotation
  file, in file order (:func:`image_ids`). The original, remapped and base files of a split list their images in
  the same order, so they give the same set, and every stage that reads images uses exactly it: proposals train
  and predict, each OAKE shard (the images of the shard that are in the set: the union over the shards is the
  set, whatever the shard count; a shard may get none), detector training (its set, after mmdet's filter of
  images without base boxes), proposal recall. train predict reads the first :data:`IMAGES` images of its own
  file (the ``.min`` file of val for COCO and the demo: the first annotated images);
* :data:`ITERS` iterations for each training (the RPN of proposals, the detector); the demo's CLIP teacher
  trains at most :data:`TEACHER_STEPS` steps;
* :data:`OBJECTS_PER_IMAGE` proposals per image in OAKE objects;
* prompts: the vocabulary stays complete, only the ensembles shrink: :data:`TEMPLATES` ViLD templates and MM-OVOD
  description sentences per class, :data:`EXEMPLARS` exemplar with :data:`EXEMPLAR_VIEWS` view per class; the
  learned ``ml`` prompt trains :data:`ML_EPOCHS` epoch on at most :data:`ML_IMAGES` images.

Outputs that can be mistaken for results say ``dry_run`` (metrics.json, the report, prompt files, feature-cache
and proposal attrs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.core import images

IMAGES = 8
ITERS = 4
TEACHER_STEPS = 20
OBJECTS_PER_IMAGE = 5
TEMPLATES = 2
EXEMPLARS = 1
EXEMPLAR_VIEWS = 1
ML_EPOCHS = 1
ML_IMAGES = 16
WARNING = "DRY RUN: every stage was shrunk to a few images and iterations; these numbers are not results"


def image_ids(annotation_file: str | Path) -> list[int]:
    """The dry-run image set of a split: the ids of the first :data:`IMAGES` image records of ``annotation_file``,
    in file order.

    Raises:
        ValueError: see :func:`pipeline.core.images.image_records` (names the file).
    """
    return record_ids(images.image_records(annotation_file))


def record_ids(records: Sequence[Mapping[str, Any]]) -> list[int]:
    """The dry-run image set of an already loaded ``images`` list (file order): the ids of its first
    :data:`IMAGES` records."""
    return [int(im["id"]) for im in records[:IMAGES]]


def restrict(data: Mapping[str, Any], image_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """A loaded COCO- or LVIS-format annotation dict with only the images of ``image_ids`` (default: its own
    dry-run set) and their annotations (categories and other keys kept)."""
    keep = set(record_ids(data["images"]) if image_ids is None else image_ids)
    images_kept = [im for im in data["images"] if int(im["id"]) in keep]
    return {**data, "images": images_kept, "annotations": [a for a in data["annotations"] if a["image_id"] in keep]}


def select(items: Sequence[images.ImageItem], annotation_file: str | Path) -> list[images.ImageItem]:
    """The ``items`` whose image is in the dry-run set of ``annotation_file`` (their order kept)."""
    keep = set(image_ids(annotation_file))
    return [it for it in items if it.image_id in keep]
