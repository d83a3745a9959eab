"""mmengine training configs shared by the detector (``train fit``) and the RPN (``proposals train``): gradient
accumulation in the schedule's units, the schedule's log line, and the mmengine log lines a user cannot act on
filtered out (no mmengine import here; the hooks these configs name live in :mod:`pipeline.models.hooks`).

* :func:`accumulate` turns an mmengine config's data-iteration counts into optimiser steps of ``accumulation``
  iterations (``accumulative_counts``, loop length, checkpoint and log intervals).
* :func:`quiet_mmengine` drops mmengine's known notices (frozen parameters skipped by the optimiser, FileClient
  deprecation, the generic BatchNorm notice on accumulation) from its logger.
"""

from __future__ import annotations

import logging
import re

#: mmengine notices without anything a user can do (matched at the start of the message)
MMENGINE_NOISE = (
    r".* is skipped since its requires_grad=False",  # frozen backbone stages: the optimiser leaves them out
    r'"FileClient" will be deprecated in future',
    r'"HardDiskBackend" is the alias of "LocalBackend"',
    r"Gradient accumulative may slightly decrease performance because the model has BatchNorm layers",  # see below
)
_NOISE = re.compile("|".join(f"(?:{p})" for p in MMENGINE_NOISE))


class _Noise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _NOISE.match(record.getMessage())


def quiet_mmengine(logger: logging.Logger) -> None:
    """Drop :data:`MMENGINE_NOISE` from ``logger`` (an mmengine ``MMLogger``, e.g. ``runner.logger``) and its
    handlers (the handlers too: mmengine's ``print_log`` can reach them through a child logger); idempotent."""
    for target in (logger, *logger.handlers):
        if not any(isinstance(f, _Noise) for f in target.filters):
            target.addFilter(_Noise())


def accumulate(cfg, accumulation: int, per_gpu: int = 1) -> None:
    """Make an mmengine config ``cfg`` (a dict or ``Config``) whose counts are optimiser steps run ``accumulation``
    data iterations per step: ``optim_wrapper.accumulative_counts``; for an iteration loop ``max_iters``,
    ``val_interval``, the checkpoint and log intervals times ``accumulation``; the hooks
    ``AccumulatedParamSchedulerHook`` in place of ``param_scheduler`` (iteration-based schedulers step once per
    optimiser step) and ``BatchNormNoticeHook`` (:mod:`pipeline.models.hooks`). An epoch loop keeps its epochs (an
    epoch is the same images whatever the batch). ``accumulation`` 1 changes nothing."""
    if accumulation == 1:
        return
    cfg["optim_wrapper"]["accumulative_counts"] = accumulation
    loop, hooks = cfg["train_cfg"], cfg["default_hooks"]
    if loop.get("type", "IterBasedTrainLoop") == "IterBasedTrainLoop":
        loop["max_iters"] *= accumulation
        if "val_interval" in loop:
            loop["val_interval"] *= accumulation
        if not hooks["checkpoint"].get("by_epoch", False):
            hooks["checkpoint"]["interval"] *= accumulation
        hooks["logger"]["interval"] *= accumulation
    hooks["param_scheduler"] = dict(type="AccumulatedParamSchedulerHook", accumulation=accumulation)
    notice = dict(type="BatchNormNoticeHook", accumulation=accumulation, per_gpu=per_gpu)
    cfg["custom_hooks"] = [*(cfg.get("custom_hooks") or []), notice]


def schedule_line(cfg) -> str:
    """One log line of a training config (dict or ``Config``): the batch (``cfg["batch"]``, :func:`set_batch`'s
    plain values, when there is one), the length in optimiser steps and data iterations, the lr, the warm-up and
    the lr decay steps (or that there is none)."""
    from pipeline.core.batching import Batch

    parts = []
    batch = cfg.get("batch") or {}
    n = int(batch.get("accumulation", 1))
    if batch:
        parts.append(Batch.from_record(batch).describe())
    loop = cfg["train_cfg"]
    if loop.get("type", "IterBasedTrainLoop") == "IterBasedTrainLoop":
        iters = int(loop["max_iters"])
        if n == 1:
            parts.append(f"{iters} iterations")
        elif iters % n == 0:
            parts.append(f"{iters // n} optimiser steps = {iters} data iterations")
        else:
            parts.append(f"{iters} data iterations = {iters / n:.2f} optimiser steps (the last one partial)")
    else:
        parts.append(f"{loop['max_epochs']} epochs")
    parts.append(f"lr {cfg['optim_wrapper']['optimizer']['lr']:g}")
    scale = cfg.get("auto_scale_lr") or {}
    if scale.get("enable"):
        parts[-1] += f" for {scale['base_batch_size']} images (mmengine scales it to the real batch)"
    decay = []
    for sched in cfg.get("param_scheduler") or []:
        unit = "epoch" if sched.get("by_epoch", True) else "step"
        if sched["type"] == "LinearLR":
            parts.append(f"linear warm-up over {sched['end'] - sched.get('begin', 0)} {unit}s")
        elif sched["type"] == "MultiStepLR" and sched["milestones"]:
            decay.append(f"lr x{sched.get('gamma', 0.1):g} after {unit}s {list(sched['milestones'])}")
    parts.append("; ".join(decay) if decay else "no lr decay step (constant lr after the warm-up)")
    return ", ".join(parts)
