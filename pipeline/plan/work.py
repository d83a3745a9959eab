"""The work of a run, from the annotation files' image records and the configured sizes: images and their sizes
per split, blocks per image, object rows per image, training iterations and images per iteration.

Image sizes come from the annotation JSON's ``width`` / ``height`` (no image is opened); the demo's files before
they are generated come from its configured counts and candidate sizes (drawn uniformly: each size's expected
share, an estimate until the files exist).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core import dry_run as dry
from pipeline.models.clip import geometry


@dataclass(frozen=True)
class SplitImages:
    """The images of one split: ``ids`` int64 [N] ascending, ``sizes`` int64 [N, 2] (width, height) in id order,
    ``annotated`` = images with at least one annotation whose shorter side is >= 32 (what the detectors and the
    RPN train on), ``dry_ids`` = the dry-run image set (first records in file order), ``source`` = where the
    sizes come from."""

    folder: str
    ids: np.ndarray
    sizes: np.ndarray
    annotated: int
    dry_ids: tuple[int, ...]
    categories: int
    source: str


def read_split(folder: str, annotations: Path) -> SplitImages:
    """The images of an annotation file (COCO or LVIS format).

    Raises:
        ValueError: unreadable file, or an image record without an integer ``id`` / ``width`` / ``height`` (names
            the file and the record).
    """
    try:
        data = json.loads(Path(annotations).read_text())
        records = data["images"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{annotations}: not a readable COCO-format annotation file ({exc!r})") from exc
    ids, sizes = [], []
    for k, im in enumerate(records):
        try:
            ids.append(int(im["id"]))
            sizes.append((int(im["width"]), int(im["height"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{annotations}: image record {k} has no integer id / width / height ({exc!r})") from exc
    with_boxes = {a.get("image_id") for a in data.get("annotations", [])}
    annotated = sum(1 for i, (w, h) in zip(ids, sizes, strict=True) if i in with_boxes and min(w, h) >= 32)
    order = np.argsort(np.asarray(ids, dtype=np.int64), kind="stable")
    return SplitImages(
        folder=folder,
        ids=np.asarray(ids, dtype=np.int64)[order],
        sizes=np.asarray(sizes, dtype=np.int64).reshape(-1, 2)[order],
        annotated=annotated,
        dry_ids=tuple(ids[: dry.IMAGES]),
        categories=len(data.get("categories", [])),
        source=str(annotations),
    )


def expected_split(folder: str, images: int, sizes: Sequence[tuple[int, int]], categories: int) -> SplitImages:
    """A split not generated yet: ``images`` images with ids 1..N, the candidate ``sizes`` in turn (their expected
    shares under a uniform draw), every image annotated."""
    ids = np.arange(1, images + 1, dtype=np.int64)
    table = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    return SplitImages(
        folder=folder,
        ids=ids,
        sizes=table[np.arange(images) % len(table)],
        annotated=images,
        dry_ids=tuple(ids[: dry.IMAGES].tolist()),
        categories=categories,
        source="estimated from the configured image count and sizes",
    )


@functools.lru_cache(maxsize=4096)
def blocks_per_image(width: int, height: int) -> int:
    """Block rows of one image: block 0 plus every window of every pyramid level (:mod:`geometry`)."""
    return 1 + sum(len(level.offsets) for level in geometry.pyramid(width, height))


def block_rows(sizes: np.ndarray) -> np.ndarray:
    """int64 [N]: the block rows of each image of ``sizes`` [N, 2] (width, height)."""
    if len(sizes) == 0:
        return np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(sizes, axis=0, return_inverse=True)
    counts = np.array([blocks_per_image(int(w), int(h)) for w, h in unique], dtype=np.int64)
    return counts[inverse.reshape(-1)]


def proposal_rows(path: Path, ids: np.ndarray, limit: int | None) -> np.ndarray | None:
    """int64 [N]: the object rows of each image of ``ids`` from an existing proposals file (boxes with both sides
    >= 4, at most ``limit``); None when the file does not exist or lacks one of the images."""
    if not Path(path).exists():
        return None
    import h5py

    with h5py.File(path, "r") as f:
        file_ids, offsets, boxes = f["image_ids"][()], f["offsets"][()], f["boxes"]
        index = {int(i): k for k, i in enumerate(file_ids)}
        if any(int(i) not in index for i in ids):
            return None
        keep = np.zeros(len(offsets) - 1, dtype=np.int64)
        step = 1 << 20
        for lo in range(0, boxes.shape[0], step):
            kept = geometry.keep_objects(boxes[lo : lo + step]).astype(np.int64)
            csum = np.concatenate([[0], np.cumsum(kept)])
            a = np.clip(offsets[:-1] - lo, 0, len(kept))
            b = np.clip(offsets[1:] - lo, 0, len(kept))
            keep += csum[b] - csum[a]
    rows = keep[[index[int(i)] for i in ids]]
    return np.minimum(rows, limit) if limit is not None else rows


def shard_members(ids: np.ndarray, shards: int, index: int, dry_ids: Sequence[int] | None) -> np.ndarray:
    """Positions in ``ids`` (ascending) of the images of shard ``index`` (sorted position mod ``shards``), only
    those of ``dry_ids`` when given."""
    positions = np.arange(index, len(ids), shards)
    if dry_ids is not None:
        keep = np.isin(ids[positions], np.asarray(dry_ids, dtype=np.int64))
        positions = positions[keep]
    return positions


@dataclass(frozen=True)
class Training:
    """A training job's length: ``iters`` optimiser steps of ``batch`` images each (all GPUs and accumulated
    iterations together), ``per_gpu`` images per forward of one GPU, ``accumulation`` iterations per step."""

    iters: int
    batch: int
    per_gpu: int
    accumulation: int = 1

    @property
    def images(self) -> int:
        return self.iters * self.batch


def rpn_training(
    images: int, *, epochs: float, iters: int | None, gpus: int, batch_size: int, lr_batch: int, mode: str
) -> Training:
    """The RPN's schedule as ``proposals train`` computes it (:func:`pipeline.proposals.schedule.schedule`):
    ``iters`` optimiser steps, else ``ceil(epochs x images / effective batch)``."""
    from pipeline.core.batching import plan

    batch = plan(lr_batch, gpus, batch_size, mode, keys="proposals")
    total = iters if iters is not None else math.ceil(epochs * max(images, 0) / batch.effective)
    return Training(iters=int(total), batch=batch.effective, per_gpu=batch_size, accumulation=batch.accumulation)


def detector_training(
    config: str,
    options: Mapping[str, object],
    images: int,
    *,
    iters: int | None,
    batch_size: int | None,
    gpus: int,
    mode: str,
) -> tuple[Training, tuple[str, ...], tuple[str, ...], int]:
    """A detector run from its resolved config (a shipped name or a config file, with dotted-key ``options``):
    its schedule (``iters`` optimiser steps, else the config's ``max_iters``; an epoch schedule becomes
    ``epochs x images / effective batch`` steps), the batch of a step (:func:`pipeline.core.batching.plan` with the
    config's reference batch, ``mode`` = ``train.effective_batch``), the prompt kinds and OAKE kinds it reads
    (:func:`pipeline.models.detector.experiment.reads`) and its detections per image."""
    from pipeline.core.batching import plan
    from pipeline.models.detector import experiment
    from pipeline.models.detector.config import reference_batch

    cfg = experiment.load(config, options)
    per_gpu = batch_size or int(cfg.train_dataloader.batch_size)
    batch = plan(reference_batch(cfg) or gpus * per_gpu, gpus, per_gpu, mode, keys="train")
    if iters is None:
        loop = cfg.train_cfg
        if loop.get("type") == "EpochBasedTrainLoop":
            iters = math.ceil(loop.max_epochs * max(images, 0) / batch.effective)
        else:
            iters = int(loop.max_iters)
    prompts, caches = experiment.reads(cfg)
    per_image = int(cfg.model.test_cfg.rcnn.max_per_img)
    sched = Training(iters=int(iters), batch=batch.effective, per_gpu=per_gpu, accumulation=batch.accumulation)
    return sched, prompts, caches, per_image
