"""The batch of an optimiser step: GPUs x images per GPU x accumulated iterations, against the batch a schedule was
made for (the reference's: 16 images per step for the detectors and mmdet's RPN 1x).

Two modes (config keys ``train.effective_batch`` and ``proposals.effective_batch``):

* ``reference``: every optimiser step sees the reference's number of images. ``gpus x batch_size`` must divide it;
  the quotient is the number of iterations whose gradients are accumulated before a step (mmengine's
  ``accumulative_counts``). The lr, warm-up, milestones and length stay the schedule's, in optimiser steps; the loop
  runs ``accumulation`` data iterations per step, so a run on fewer GPUs takes proportionally longer.
* ``actual``: one optimiser step per data iteration of ``gpus x batch_size`` images, the lr scaled linearly to it
  (mmengine's ``auto_scale_lr``); the schedule keeps its number of steps, so a run on fewer GPUs sees fewer images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

MODES = ("reference", "actual")


@dataclass(frozen=True)
class Batch:
    """``gpus`` processes x ``per_gpu`` images, gradients of ``accumulation`` iterations per optimiser step;
    ``reference``: the images per step the schedule (lr, iterations) was made for; ``mode``: one of :data:`MODES`."""

    gpus: int
    per_gpu: int
    accumulation: int
    reference: int
    mode: str

    @property
    def effective(self) -> int:
        """Images per optimiser step."""
        return self.gpus * self.per_gpu * self.accumulation

    @property
    def lr_factor(self) -> float:
        """The factor on the schedule's lr: effective / reference (1 in ``reference`` mode)."""
        return self.effective / self.reference

    def describe(self) -> str:
        """One line: ``1 GPU x 2 images x 8 accumulated = 16 images per optimiser step (reference 16)``."""
        gpus = f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}"
        line = f"{gpus} x {self.per_gpu} image{'s' if self.per_gpu != 1 else ''} x {self.accumulation} accumulated"
        line += f" = {self.effective} images per optimiser step (reference {self.reference}"
        if self.effective != self.reference:
            line += f"; lr x {self.lr_factor:g}"
        return line + ")"

    @classmethod
    def from_record(cls, record) -> Batch:
        """The batch of an :meth:`as_dict` record (``final.pth``'s ``meta.batch``, a config's ``batch``)."""
        return cls(**{k: record[k] for k in ("gpus", "per_gpu", "accumulation", "reference", "mode")})

    def as_dict(self) -> dict:
        """Plain values for ``final.pth`` and the report: ``gpus``, ``per_gpu``, ``accumulation``, ``effective``,
        ``reference``, ``mode``."""
        return {**asdict(self), "effective": self.effective}


def mode_option(reference: str):
    """The ``--effective-batch`` option of a training stage (:data:`MODES`, default ``reference``); ``reference``
    names the batch of an optimiser step in words (``--lr-batch images``)."""
    from pipeline.core.options import option

    return option(
        "reference",
        help=f"reference: every optimiser step sees {reference}, gradients accumulated over as many iterations of "
        "gpus x batch size images as that takes; actual: one step per iteration, lr scaled to gpus x batch size",
        choices=MODES,
    )


def describe_record(record: dict) -> str:
    """:meth:`Batch.describe` of a record of :meth:`Batch.as_dict` (``final.pth``'s ``meta.batch``), with its mode:
    ``... (reference 16), effective_batch reference``."""
    batch = Batch.from_record(record)
    return f"{batch.describe()}, effective_batch {batch.mode}"


def _nearest(values: Sequence[int], target: int) -> list[int]:
    """The values nearest to ``target`` below and above it (at most one each)."""
    below = [v for v in values if v < target]
    above = [v for v in values if v > target]
    return ([max(below)] if below else []) + ([min(above)] if above else [])


def plan(reference: int, gpus: int, per_gpu: int, mode: str = "reference", keys: str = "train") -> Batch:
    """The batch of a run; ``ValueError`` naming ``{keys}.gpus`` / ``{keys}.batch_size`` and the nearest settings
    that divide ``reference`` when ``mode`` is ``reference`` and ``gpus x per_gpu`` does not divide it."""
    if mode not in MODES:
        raise ValueError(f"config key '{keys}.effective_batch': {mode!r} is not one of {list(MODES)}")
    if min(reference, gpus, per_gpu) < 1:
        raise ValueError(f"{keys}: reference batch {reference}, gpus {gpus}, batch_size {per_gpu} must be >= 1")
    if mode == "actual":
        return Batch(gpus, per_gpu, 1, reference, mode)
    if reference % (gpus * per_gpu):
        gpu_options = _nearest([g for g in range(1, reference + 1) if reference % (g * per_gpu) == 0], gpus)
        size_options = _nearest([b for b in range(1, reference + 1) if reference % (gpus * b) == 0], per_gpu)
        hints = [f"{keys}.gpus {g} (batch_size {per_gpu})" for g in gpu_options]
        hints += [f"{keys}.batch_size {b} (gpus {gpus})" for b in size_options]
        hints.append(f"{keys}.effective_batch actual (no accumulation, lr scaled to {gpus * per_gpu} images)")
        raise ValueError(
            f"config keys '{keys}.gpus' x '{keys}.batch_size' = {gpus} x {per_gpu} = {gpus * per_gpu} images per "
            f"iteration do not divide the reference's {reference} images per optimiser step "
            f"({keys}.effective_batch reference accumulates whole iterations); nearest valid settings: "
            + "; ".join(hints)
        )
    return Batch(gpus, per_gpu, reference // (gpus * per_gpu), reference, mode)
