"""Plan-time check of the training batches: every trained run and the RPN can reach the batch of an optimiser step
on the configured GPUs (gradient accumulation, :mod:`pipeline.core.batching`)."""

from __future__ import annotations


def check_batches(config) -> None:
    """The workflow configuration's batches, before any job: every trained run (``experiments`` and ``variants``
    not in ``train.import``) and the RPN (unless ``proposals.import``) with ``effective_batch: reference`` need
    ``gpus x batch_size`` to divide the batch of an optimiser step (an experiment config's
    ``auto_scale_lr.base_batch_size``; the RPN's ``proposals.lr_batch``). ``ValueError`` naming the keys, the
    experiment and the nearest valid settings otherwise. Reads the detector configs with ``mmengine.config`` only."""
    from pipeline.core.batching import plan
    from pipeline.models.detector import experiment
    from pipeline.models.detector.config import batch_of

    train = config["train"]
    imported = set(train.get("import") or {})
    for name, run in experiment.check(config).items():  # resolved once per configuration (remembered)
        if name in imported:
            continue
        cfg = experiment.load(run.config, train.get("options") or {})
        if run.options:  # a variant's overrides, after the run-wide ones (as training applies them)
            cfg.merge_from_dict(dict(run.options))
        if train.get("batch_size"):
            cfg.train_dataloader.batch_size = train["batch_size"]
        try:
            batch_of(cfg, train["gpus"], train["effective_batch"])
        except ValueError as err:
            kind = "variant" if run.base else "experiment"
            raise ValueError(f"{kind} {name}: {err}") from None
    rpn = config["proposals"]
    if not rpn.get("import"):
        plan(rpn["lr_batch"], rpn["gpus"], rpn["batch_size"], rpn["effective_batch"], keys="proposals")
