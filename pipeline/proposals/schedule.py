"""The RPN's training schedule (``proposals train``): its length in epochs over the training images, lr steps at
epochs, and the batch of an optimiser step.

The defaults are mmdet's ``rpn_r50_fpn_1x``: 12 epochs, lr 0.02 for 16 images per iteration, x0.1 after epochs 8
and 11, a 500-iteration linear warm-up. The loop is iteration-based (a requeued job resumes at its last checkpoint,
not at an epoch boundary). The batch (:mod:`pipeline.core.batching`) is ``lr_batch`` images per optimiser step in
``reference`` mode (gradients of ``lr_batch / (gpus x batch_size)`` iterations accumulated, the lr as given) or
``gpus x batch_size`` in ``actual`` mode (the lr scaled linearly: ``lr * gpus * batch_size / lr_batch``). The epochs
become ``ceil(epochs * images / effective batch)`` optimiser steps, the lr steps the same fractions of them;
``--iters`` fixes the number of optimiser steps instead and keeps the steps' fractions (``s / epochs`` of the run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.core.batching import Batch, plan

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
    """Optimiser steps, the steps after which the lr drops x0.1, the lr of the effective batch and the batch."""

    iters: int
    milestones: tuple[int, ...]
    lr: float
    batch: Batch

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
    gpus: int,
    batch_size: int,
    mode: str = "reference",
) -> Schedule:
    """The schedule of ``epochs`` over ``images`` training images, or of ``iters`` optimiser steps when given;
    ``steps`` in epochs (each must lie in ``(0, epochs]``); ``lr`` is for ``lr_batch`` images per step, the
    reference batch; ``gpus x batch_size`` images per iteration, ``mode`` as :func:`pipeline.core.batching.plan`
    (a ``ValueError`` names ``proposals.gpus`` / ``proposals.batch_size`` when they do not divide ``lr_batch``)."""
    if any(not 0 < s <= epochs for s in steps):
        raise ValueError(f"lr steps {list(steps)}: each must be an epoch in (0, {epochs}]")
    batch = plan(lr_batch, gpus, batch_size, mode, keys="proposals")
    if iters is None:
        if images < 1:
            raise ValueError("no training image has a base box of the minimum size: nothing to train on")
        iters = math.ceil(epochs * images / batch.effective)
    milestones = tuple(sorted({max(1, round(s * iters / epochs)) for s in steps}))
    return Schedule(iters=iters, milestones=milestones, lr=lr * batch.lr_factor, batch=batch)
