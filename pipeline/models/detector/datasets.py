"""Training datasets restricted to a set of image ids (the dry run's image set, :mod:`pipeline.core.dry_run`).

mmdet's ``CocoDataset`` and ``LVISV1Dataset`` with one more argument, ``image_ids``: after mmdet's own filter
(images without a box of the classes, images under ``min_size``) only the images with these ids stay, in the
file's order. The OAKE caches are keyed by image id, so a dataset restricted to the ids the caches hold never asks
a shard for an image it does not have. :func:`restrict_images` switches a dataset config to its restricted type.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence

from mmdet.datasets import CocoDataset, LVISV1Dataset
from mmdet.registry import DATASETS


class _ImageSubset:
    """Mixin for an mmdet dataset: keep only the images whose id is in ``image_ids`` (``None``: every image)."""

    def __init__(self, *args, image_ids: Sequence[int] | None = None, **kwargs) -> None:
        self.image_ids = None if image_ids is None else frozenset(int(i) for i in image_ids)
        super().__init__(*args, **kwargs)

    def filter_data(self) -> list[dict]:
        """mmdet's filter, then the images of ``image_ids``.

        Raises:
            ValueError: no image of ``image_ids`` is left (names the annotation file).
        """
        data = super().filter_data()
        if self.image_ids is None:
            return data
        kept = [d for d in data if int(d["img_id"]) in self.image_ids]
        if not kept:
            raise ValueError(
                f"{self.ann_file}: none of the images {sorted(self.image_ids)[:10]} is left for training after "
                f"mmdet's filter (no box of the training classes, or smaller than {self.filter_cfg})"
            )
        return kept


@DATASETS.register_module()
class ImageSubsetCocoDataset(_ImageSubset, CocoDataset):
    """``CocoDataset`` restricted to ``image_ids``."""


@DATASETS.register_module()
class ImageSubsetLVISV1Dataset(_ImageSubset, LVISV1Dataset):
    """``LVISV1Dataset`` restricted to ``image_ids``."""


SUBSET_TYPES = {"CocoDataset": "ImageSubsetCocoDataset", "LVISV1Dataset": "ImageSubsetLVISV1Dataset"}


def restrict_images(dataset: MutableMapping, image_ids: Sequence[int]) -> None:
    """Make the dataset config ``dataset`` (a ``CocoDataset`` or ``LVISV1Dataset`` dict) read only ``image_ids``.

    Raises:
        ValueError: another dataset type.
    """
    kind = dataset["type"]
    if kind not in SUBSET_TYPES:
        raise ValueError(f"dataset type {kind!r} cannot be restricted to a set of images: {sorted(SUBSET_TYPES)}")
    dataset["type"] = SUBSET_TYPES[kind]
    dataset["image_ids"] = [int(i) for i in image_ids]
