"""The RPN's training schedule (``proposals train``): its length in epochs over the training images, lr steps at
epochs, and the lr scaled linearly to the real batch.

The defaults are mmdet's ``rpn_r50_fpn_1x``: 12 epochs, lr 0.02 for 16 images per iteration, x0.1 after epochs 8
and 11, a 500-iteration linear warm-up. The loop is iteration-based (a requeued job resumes at its last checkpoint,
not at an epoch boundary), so the epochs become ``ceil(epochs * images / (gpus * batch_size))`` iterations, the
steps the same fractions of them; ``--iters`` fixes the length instead and keeps the steps' fractions
(``s / epochs`` of the run). The lr is scaled as mmengine's ``auto_scale_lr`` scales the detectors':
``lr * gpus * batch_size / lr_batch``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: mmdet's ``filter_cfg`` of the training dataset: images without a box, or with a side below this, are left out
MIN_SIZE = 32
WARMUP_ITERS = 500


def training_images(data: Mapping, min_size: int = MIN_SIZE) -> int:
    """The number of images mmdet's ``CocoDataset`` trains on with ``filter_empty_gt=True``: images of the COCO-format
    dict ``data`` that have at least one annotation and whose shorter side is at least ``min_size``."""
    with_boxes = {a["image_id"] for a in data.get("annotations", [])}
    return sum(1 for im in data["images"] if im["id"] in with_boxes and min(im["width"], im["height"]) >= min_size)


@dataclass(frozen=True)
class Schedule:
    """Iterations, the iterations after which the lr drops x0.1, and the lr of the real batch."""

    iters: int
    milestones: tuple[int, ...]
    lr: float

    def param_scheduler(self) -> list[dict]:
        """mmengine ``param_scheduler``: the linear warm-up from lr x 0.001, then the steps (none: constant lr)."""
        warmup = dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=min(WARMUP_ITERS, self.iters))
        if not self.milestones:
            return [warmup]
        steps = dict(
            type="MultiStepLR", by_epoch=False, begin=0, end=self.iters, milestones=list(self.milestones), gamma=0.1
        )
        return [warmup, steps]


def schedule(
    *,
    images: int,
    epochs: float,
    iters: int | None,
    steps: Sequence[float],
    lr: float,
    lr_batch: int,
    batch: int,
) -> Schedule:
    """The schedule of ``epochs`` over ``images`` training images at ``batch`` images per iteration (all GPUs), or of
    ``iters`` iterations when given; ``steps`` in epochs (each must lie in ``(0, epochs]``); ``lr`` is for
    ``lr_batch`` images per iteration."""
    if any(not 0 < s <= epochs for s in steps):
        raise ValueError(f"lr steps {list(steps)}: each must be an epoch in (0, {epochs}]")
    if iters is None:
        if images < 1:
            raise ValueError("no training image has a base box of the minimum size: nothing to train on")
        iters = math.ceil(epochs * images / batch)
    milestones = tuple(sorted({max(1, round(s * iters / epochs)) for s in steps}))
    return Schedule(iters=iters, milestones=milestones, lr=lr * batch / lr_batch)
