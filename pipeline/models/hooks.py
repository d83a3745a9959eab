"""mmengine hooks of the training runs (named by the configs of :mod:`pipeline.models.training`; imported by
``register_modules`` and ``proposals train``).

* :class:`AccumulatedParamSchedulerHook` replaces mmengine's ``ParamSchedulerHook``: iteration-based lr schedulers
  step once per optimiser step (after every ``accumulation``-th data iteration), so warm-up ends and milestones stay
  in optimiser steps, the reference's iterations, whatever the accumulation.
* :class:`RandomStateHook` stores torch's CPU and CUDA random states in every checkpoint and puts them back before
  the first iteration after a resume: the RoI and anchor samplers then draw what an uninterrupted run draws (the
  data order is replayed by mmengine itself, which advances the data loader to the resumed iteration).
* :class:`BatchNormNoticeHook` says, with accumulation, how many BatchNorm layers compute batch statistics.
"""

from __future__ import annotations

from mmengine.hooks import Hook, ParamSchedulerHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class AccumulatedParamSchedulerHook(ParamSchedulerHook):
    """mmengine's ``ParamSchedulerHook`` stepping iteration-based schedulers once per optimiser step: after data
    iteration ``i`` (0-based) when ``(i + 1) % accumulation == 0``, the iterations after which the optimiser wrapper
    steps. A scheduler's ``begin`` / ``end`` / ``milestones`` therefore count optimiser steps."""

    def __init__(self, accumulation: int = 1) -> None:
        if accumulation < 1:
            raise ValueError(f"accumulation must be >= 1, got {accumulation}")
        self.accumulation = accumulation

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if (runner.iter + 1) % self.accumulation == 0:
            super().after_train_iter(runner, batch_idx, data_batch, outputs)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """torch's random states (CPU and every CUDA device) in each checkpoint (``random_state``), put back before the
    first training iteration after a resume. Data transforms draw from numpy in the data loader's processes (or, with
    no worker, in the main process before this hook runs), which mmengine replays by advancing the loader; the
    model's samplers draw from torch, restored here."""

    priority = "VERY_HIGH"

    def __init__(self) -> None:
        self._pending: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        import torch

        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["random_state"] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get("random_state")

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is None:
            return
        import torch

        torch.set_rng_state(self._pending["cpu"].cpu())
        if "cuda" in self._pending and torch.cuda.is_available():
            states = [s.cpu() for s in self._pending["cuda"]]
            if len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)
        self._pending = None


def trainable_batch_norms(model) -> int:
    """The BatchNorm layers of ``model`` (in train mode) that compute batch statistics: with accumulation they see
    one process's images per iteration, not the effective batch."""
    from torch.nn.modules.batchnorm import _BatchNorm

    return sum(1 for m in model.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats)


@HOOKS.register_module()
class BatchNormNoticeHook(Hook):
    """With accumulation, one log line naming how many BatchNorm layers compute statistics over each process's
    images (frozen ones, ``norm_eval``, are not counted: they make an accumulated step equal a large-batch step)."""

    def __init__(self, accumulation: int = 1, per_gpu: int = 1) -> None:
        self.accumulation, self.per_gpu, self._done = accumulation, per_gpu, False

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._done or self.accumulation == 1:
            return
        self._done = True
        model = getattr(runner.model, "module", runner.model)
        n = trainable_batch_norms(model)
        if n:
            runner.logger.warning(
                f"{n} BatchNorm layer(s) compute statistics over {self.per_gpu} image(s) per process and iteration, "
                f"not over the accumulated batch (SyncBN over several GPUs sees gpus x batch_size images)"
            )
