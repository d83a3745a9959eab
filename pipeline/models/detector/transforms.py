"""The project's mmdet 3 data transforms: ``ReadImage`` (an image through the project's one decoder) and
``LoadCLIPFeatures`` (an image's OAKE features in the sample).

``ReadImage`` stands where mmcv's ``LoadImageFromFile`` would, in the train and test pipelines of the detectors and
the RPN: the image is decoded by :func:`pipeline.core.images.decode` (pixel limit checked on the header, EXIF
orientation applied, every mode as 8-bit RGB), so a picture drawn from the same file shows what the detector saw.

``LoadCLIPFeatures``
Place it **after** the geometric transforms (Resize, RandomFlip, ...): it reads the image's rows from the HDF5
shards (opened lazily, once per DataLoader worker) and maps the stored block and object boxes, which are in original
pixels, through the ``homography_matrix`` those transforms recorded, so the boxes land where the image content went.
Features are not flipped (the reference assumes flip-invariance). Block labels mark, for every block, the classes of
the non-crowd ground-truth boxes it overlaps (any positive area; overlap is invariant under the shared transform).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import get_box_tensor

from pipeline.core import images
from pipeline.formats.feature_cache import ShardReader
from pipeline.models.clip.geometry import keep_objects
from pipeline.models.detector.losses import block_labels


def map_boxes(boxes: np.ndarray, homography: np.ndarray | None) -> np.ndarray:
    """Apply a 3x3 homography to xyxy boxes ``[N, 4]`` (corners mapped, then min / max)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if homography is None or len(boxes) == 0:
        return boxes
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([np.stack([x1, y1]), np.stack([x2, y1]), np.stack([x1, y2]), np.stack([x2, y2])])  # [4, 2, N]
    pts = np.concatenate([corners, np.ones((4, 1, len(boxes)), np.float32)], 1)  # [4, 3, N]
    mapped = np.einsum("ij,cjn->cin", np.asarray(homography, np.float32), pts)
    xy = mapped[:, :2] / mapped[:, 2:3]
    return np.concatenate([xy.min(0), xy.max(0)]).T.astype(np.float32)


@TRANSFORMS.register_module()
class ReadImage(BaseTransform):
    """Reads ``results["img_path"]`` with :func:`pipeline.core.images.decode`: ``img`` ``uint8 [H, W, 3]`` BGR (mmcv's
    layout; float32 with ``to_float32``), ``img_shape`` and ``ori_shape`` ``(H, W)``.

    Args:
        max_pixels: the pixel limit checked on the header (``None``: none).
        to_float32: as ``LoadImageFromFile``.

    Raises:
        pipeline.core.images.UnreadableImage: a ``ValueError`` naming the file.
    """

    def __init__(self, max_pixels: int | None = images.MAX_IMAGE_PIXELS, to_float32: bool = False) -> None:
        self.max_pixels, self.to_float32 = max_pixels, to_float32

    def transform(self, results: dict) -> dict:
        img = images.read_bgr(results["img_path"], self.max_pixels)
        results["img"] = img.astype(np.float32) if self.to_float32 else img
        results["img_shape"] = results["ori_shape"] = img.shape[:2]
        return results


class _Shards:
    """The shards of one kind and split; finds an image's shard by id."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.readers = [ShardReader(p) for p in paths]

    def get(self, image_id: int) -> dict:
        for reader in self.readers:
            if image_id in reader:
                return reader.get(image_id)
        raise KeyError(f"image {image_id} is in none of the shards {[str(r.path) for r in self.readers]}")


@TRANSFORMS.register_module()
class LoadCLIPFeatures(BaseTransform):
    """Adds ``clip_global [D]``, ``clip_blocks [Nb, D]``, ``block_bboxes [Nb, 4]``, ``block_labels [Nb, C]``,
    ``clip_objects [No, D]``, ``object_bboxes [No, 4]`` (float32 tensors) for the kinds given.

    Args:
        globals_shards, blocks_shards, objects_shards: shard files of the split (empty = kind not loaded).
        num_classes: width of the block labels (all classes; labels of classes absent from the GT stay 0).
        min_object_side: stored objects are filtered again by w, h >= this (original pixels).
        max_objects: keep at most this many objects per image, those of highest objectness (None: all, as the
            reference; the CPU demo caps them, since every object box is a RoI of the object head).
    """

    def __init__(
        self,
        globals_shards: Sequence[str] = (),
        blocks_shards: Sequence[str] = (),
        objects_shards: Sequence[str] = (),
        num_classes: int = 1,
        min_object_side: float = 4.0,
        max_objects: int | None = None,
    ) -> None:
        if max_objects is not None and max_objects < 1:
            raise ValueError(f"LoadCLIPFeatures: max_objects must be >= 1 or None, got {max_objects}")
        self.paths = {"globals": list(globals_shards), "blocks": list(blocks_shards), "objects": list(objects_shards)}
        self.num_classes, self.min_object_side, self.max_objects = num_classes, min_object_side, max_objects
        self._shards: dict[str, _Shards] | None = None

    def _open(self) -> dict[str, _Shards]:
        if self._shards is None:
            self._shards = {kind: _Shards(p) for kind, p in self.paths.items() if p}
        return self._shards

    def transform(self, results: dict) -> dict:
        shards = self._open()
        image_id = int(results["img_id"])
        homography = results.get("homography_matrix")
        if "globals" in shards:
            results["clip_global"] = torch.from_numpy(shards["globals"].get(image_id)["embeddings"][0])
        if "blocks" in shards:
            rec = shards["blocks"].get(image_id)
            boxes = torch.from_numpy(map_boxes(rec["boxes"], homography))
            results["clip_blocks"] = torch.from_numpy(rec["embeddings"])
            results["block_bboxes"] = boxes
            gt = results.get("gt_bboxes")
            gt_boxes = get_box_tensor(gt).float() if gt is not None else torch.zeros(0, 4)
            gt_labels = torch.as_tensor(results.get("gt_bboxes_labels", np.zeros(0)), dtype=torch.long)
            crowd = torch.as_tensor(results.get("gt_ignore_flags", np.zeros(len(gt_labels), bool)))
            results["block_labels"] = block_labels(boxes, gt_boxes, gt_labels, self.num_classes, crowd)
        if "objects" in shards:
            rec = shards["objects"].get(image_id)
            keep = np.flatnonzero(keep_objects(rec["boxes"], self.min_object_side))
            if self.max_objects is not None and len(keep) > self.max_objects:
                order = np.argsort(-np.asarray(rec["objectness"], np.float32)[keep], kind="stable")
                keep = np.sort(keep[order[: self.max_objects]])  # the stored order otherwise
            results["clip_objects"] = torch.from_numpy(rec["embeddings"][keep])
            results["object_bboxes"] = torch.from_numpy(map_boxes(rec["boxes"][keep], homography))
        return results

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_shards": None}
