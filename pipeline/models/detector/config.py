"""Experiment configs of the detector (method 6.8-6.9): mmdet-3-style files with ``_base_`` inheritance, loaded and
completed with the run's paths.

The files live in ``pipeline/models/detector/configs/`` (one per experiment: ``vild_ov_coco``, ``oadp_ov_coco``,
``oadp_ov_lvis`` [+ ``_released``], ``baseline_ov_coco`` and the CPU-sized ``*_demo`` variants); the experiment name
of the DAG is the config name. What a file cannot know is filled by :func:`fill_runtime`:

* class names and counts (from the remapped annotation file, bases first), ``num_base``;
* prompt files: a classifier's ``prompts`` names a prompt *kind* (``vild``, ``ml``, ``detpro``) mapped to a file;
* the training annotation file, image folder, OAKE cache shards, work dir;
* one process without a GPU: ``SyncBN`` becomes ``BN``, and fp16 (``AmpOptimWrapper``) becomes fp32.

``--cfg-options``-style overrides (dotted keys) apply before filling; :func:`set_iters` shortens a schedule to a given
number of iterations with its lr steps at the same fractions (``dry_run`` and the demo use it); :func:`set_batch`
makes every optimiser step see the config's batch (``auto_scale_lr.base_batch_size``: the reference's 16 images)
by accumulating gradients over ``base / (gpus x batch_size)`` iterations, or keeps mmengine's lr scaling
(:mod:`pipeline.core.batching`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
CLASSIFIERS = ("ViLDTextClassifier", "ScaledTextClassifier")
BRANCH_CACHES = {"object": "objects", "block": "blocks", "global": "globals"}


def available() -> list[str]:
    """Experiment configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py"))


def config_path(experiment: str | Path) -> Path:
    """The config file of an experiment name (or a path to a user's own config file)."""
    path = Path(experiment)
    if path.suffix == ".py":
        if not path.is_file():
            raise ValueError(f"detector config {path} does not exist")
        return path
    path = CONFIG_DIR / f"{experiment}.py"
    if not path.is_file():
        raise ValueError(f"experiment {experiment!r}: no config {path.name} in {CONFIG_DIR}; known: {available()}")
    return path


def read_config(experiment: str | Path, options: Mapping[str, Any] | None = None):
    """The experiment's mmengine ``Config`` with dotted-key ``options`` merged (nothing filled yet)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(config_path(experiment)), import_custom_modules=False)
    if options:
        cfg.merge_from_dict(dict(options))
    return cfg


def branches(cfg) -> tuple[str, ...]:
    """The pyramid branches a config has: ``object`` / ``block`` (RoI head) and ``global`` (detector)."""
    roi = cfg.model.roi_head
    found = [name for name in ("object", "block") if roi.get(f"{name}_head")]
    if cfg.model.get("global_head"):
        found.append("global")
    return tuple(found)


def _walk(node: Any):
    node = getattr(node, "_cfg_dict", node)  # a Config: walk its ConfigDict
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _walk(value)


def classifier_nodes(cfg) -> list[Mapping]:
    """The text-classifier dicts of the config's model (each has ``prompts``: a kind before filling, a path after)."""
    return [d for d in _walk(cfg.model) if d.get("type") in CLASSIFIERS]


def prompt_kinds(cfg) -> set[str]:
    """Prompt kinds the config's classifiers read."""
    return {d["prompts"] for d in classifier_nodes(cfg)}


def set_class_counts(cfg, num_classes: int, num_base: int) -> None:
    """Set every ``num_classes`` / ``num_base`` of a filled config's model (heads, RoI head, classifiers); a mask head
    with a mask per class is an error (its weights depend on the classes)."""
    for node in _walk(cfg.model):
        if str(node.get("type", "")).endswith("MaskHead") and not node.get("class_agnostic", False):
            raise ValueError("a mask head with a mask per class cannot take another number of classes")
        if "num_classes" in node:
            node["num_classes"] = num_classes
        if "num_base" in node:
            node["num_base"] = num_base


def set_iters(cfg, iters: int) -> None:
    """Run ``iters`` iterations: the schedule's lr steps keep their fractions of the run (an epoch schedule becomes
    an iteration schedule: LVIS 2x steps at 16/24 and 19/24), warm-ups are capped, checkpoints at most every run."""
    loop = cfg.train_cfg
    if loop.type == "EpochBasedTrainLoop":
        total = loop.max_epochs
        cfg.train_dataloader.sampler = dict(type="InfiniteSampler", shuffle=True)
        cfg.log_processor.by_epoch = False
        cfg.default_hooks.checkpoint.by_epoch = False
        cfg.default_hooks.checkpoint.interval = 2000  # as the 40k schedule (capped at the run below)
    else:
        total = loop.max_iters
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters + 1)
    for sched in cfg.param_scheduler:
        if sched.type == "MultiStepLR":
            sched.update(
                by_epoch=False, end=iters, milestones=[max(1, round(m * iters / total)) for m in sched.milestones]
            )
        else:
            sched.end = min(sched.end, iters)
    cfg.default_hooks.checkpoint.interval = min(cfg.default_hooks.checkpoint.interval, iters)
    cfg.default_hooks.logger.interval = min(cfg.default_hooks.logger.interval, max(1, iters // 10))


def reference_batch(cfg) -> int:
    """The images per optimiser step the config's lr and schedule are for: ``auto_scale_lr.base_batch_size`` (16 for
    the reference's configs, 2 for the CPU demo's); a config without one is for its own batch (gpus x batch_size is
    then unknown here: 0)."""
    scale = cfg.get("auto_scale_lr") or {}
    return int(scale.get("base_batch_size") or 0)


def batch_of(cfg, world_size: int, mode: str = "reference"):
    """The :class:`~pipeline.core.batching.Batch` of ``cfg`` trained by ``world_size`` processes of
    ``train_dataloader.batch_size`` images; ``ValueError`` naming ``train.gpus`` / ``train.batch_size`` when they
    do not divide the config's batch in ``reference`` mode."""
    from pipeline.core import batching

    per_gpu = int(cfg.train_dataloader.batch_size)
    reference = reference_batch(cfg) or world_size * per_gpu
    return batching.plan(reference, world_size, per_gpu, mode, keys="train")


def set_batch(cfg, world_size: int, mode: str = "reference", data_iters: int | None = None):
    """Apply the batch of :func:`batch_of` to ``cfg`` and return it (also stored as ``cfg.batch``, plain values).

    ``reference``: gradients of ``accumulation`` iterations per optimiser step
    (:func:`pipeline.models.training.accumulate`: loop length, checkpoint and log intervals in data iterations,
    schedulers stepped per optimiser step), the config's lr unscaled, and the distillation warm-ups (counted per
    forward pass) stretched to end at the same optimiser step. ``actual``: mmengine's ``auto_scale_lr`` scales the lr
    to ``world_size x batch_size``, one step per iteration. ``data_iters`` fixes the loop's data iterations
    afterwards (the dry run: a few iterations whatever the accumulation; mmengine steps the optimiser on the last
    partial accumulation too)."""
    from pipeline.models.training import accumulate

    batch = batch_of(cfg, world_size, mode)
    if mode == "reference":
        n = batch.accumulation
        accumulate(cfg, n, batch.per_gpu)
        if cfg.get("auto_scale_lr"):
            cfg.auto_scale_lr.enable = False  # the step sees the config's batch: its lr as it is
        if n > 1:  # WarmupWeight: gain * min(forward / end, 1); full weight at the first forward of step `end`
            roi_weights = cfg.model.get("roi_head", {}).get("weights")
            for node in (cfg.model, roi_weights):
                if node and node.get("warmup"):
                    node["warmup"] = n * (int(node["warmup"]) - 1) + 1
    if data_iters is not None:
        cfg.train_cfg.max_iters = data_iters
        cfg.train_cfg.val_interval = data_iters + 1
        cfg.default_hooks.checkpoint.interval = min(cfg.default_hooks.checkpoint.interval, data_iters)
    cfg.batch = batch.as_dict()
    return batch


def train_dataset(cfg):
    """The training dataset config (inside a ClassBalancedDataset wrapper when there is one)."""
    dataset = cfg.train_dataloader.dataset
    return dataset.dataset if dataset.type == "ClassBalancedDataset" else dataset


def fill_runtime(
    cfg,
    *,
    names: Sequence[str],
    num_base: int,
    prompts: Mapping[str, str],
    annotations: str | None = None,
    images: str | None = None,
    shards: Mapping[str, Sequence[str]] | None = None,
    work_dir: str | None = None,
    world_size: int = 1,
    cuda: bool = False,
    experiment: str = "experiment",
) -> None:
    """Complete ``cfg`` in place (see the module docstring). Errors name the experiment and what is missing."""
    k = len(names)
    if not 0 < num_base <= k:
        raise ValueError(f"{experiment}: num_base {num_base} must be in 1..{k} (the number of classes)")
    missing = sorted(prompt_kinds(cfg) - set(prompts))
    if missing:
        raise ValueError(
            f"{experiment}: the config's classifiers read the prompt kind(s) {missing}, but only {sorted(prompts)} "
            "were given (add them to prompts.kinds, or pass --prompt KIND=FILE)"
        )
    shards = shards or {}
    for branch in branches(cfg):
        kind = BRANCH_CACHES[branch]
        if annotations is not None and not shards.get(kind):
            raise ValueError(f"{experiment}: the {branch} branch needs the OAKE {kind} cache shards (--{kind})")
    for node in _walk(cfg.model):  # helper variables of the files (e.g. ml_classifier) stay as they are
        kind = node.get("type")
        if kind in CLASSIFIERS:
            node.update(prompts=str(prompts[node["prompts"]]), names=list(names), num_base=num_base)
        elif kind == "SyncBN" and world_size == 1:
            node["type"] = "BN"
        if "num_classes" in node and node["num_classes"] is None:
            node["num_classes"] = k
        if "num_base" in node and node["num_base"] is None:
            node["num_base"] = num_base
    for node in _walk(cfg.train_dataloader):
        if node.get("type") == "LoadCLIPFeatures":
            node.update(
                num_classes=k,
                globals_shards=list(shards.get("globals", [])),
                blocks_shards=list(shards.get("blocks", [])),
                objects_shards=list(shards.get("objects", [])),
            )
    if world_size == 1:
        log.info("%s: one process: SyncBN layers are plain BN", experiment)
    if cfg.optim_wrapper.type == "AmpOptimWrapper" and not cuda:
        log.info("%s: fp16 training (AmpOptimWrapper) needs a GPU: training in fp32", experiment)
        cfg.optim_wrapper.type = "OptimWrapper"
        cfg.optim_wrapper.pop("loss_scale", None)
    dataset = train_dataset(cfg)
    dataset.metainfo = dict(classes=tuple(names))
    if annotations is not None:
        dataset.ann_file = str(Path(annotations).resolve())
    if images is not None:
        # mmdet's LVIS datasets name an image by its coco_url path, split folder included (train2017/<id>.jpg): their
        # prefix is the folder that holds the split folders (data_root/coco/)
        folder = Path(images).resolve()
        dataset.data_prefix = dict(img=str(folder.parent if "LVIS" in str(dataset.type) else folder) + "/")
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    cfg.launcher = "pytorch" if world_size > 1 else "none"


def detector_config(
    experiment: str | Path,
    *,
    names: Sequence[str],
    num_base: int,
    prompts: Mapping[str, str],
    annotations: str | None = None,
    images: str | None = None,
    shards: Mapping[str, Sequence[str]] | None = None,
    work_dir: str | None = None,
    options: Mapping[str, Any] | None = None,
    iters: int | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    world_size: int = 1,
    cuda: bool = False,
    backbone: str | None = None,
    effective_batch: str = "reference",
    data_iters: int | None = None,
):
    """The complete ``Config`` of an experiment for ``mmengine.Runner.from_cfg`` (or for building the model).

    ``iters``: the run's length in optimiser steps (none: the config's); ``effective_batch`` and ``data_iters``: see
    :func:`set_batch` (``cfg.batch`` holds the resulting batch).

    ``backbone``: an ImageNet ResNet state dict in torchvision's layout (``resnet50-0676ba61.pth``) that initialises
    the backbone (``init_cfg`` Pretrained, applied before ``load_from``); the backbone then runs in pytorch style,
    the layout those weights were trained in (the reference's caffe style goes with its SoCo ``load_from``)."""
    cfg = read_config(experiment, options)
    if backbone is not None:
        cfg.model.backbone.update(style="pytorch", init_cfg=dict(type="Pretrained", checkpoint=str(backbone)))
    if iters is not None:
        set_iters(cfg, iters)
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    if workers is not None:
        cfg.train_dataloader.num_workers = workers
    try:
        set_batch(cfg, world_size, effective_batch, data_iters)
    except ValueError as err:
        raise ValueError(f"{experiment}: {err}") from None
    fill_runtime(
        cfg,
        names=names,
        num_base=num_base,
        prompts=prompts,
        annotations=annotations,
        images=images,
        shards=shards,
        work_dir=work_dir,
        world_size=world_size,
        cuda=cuda,
        experiment=str(experiment),
    )
    return cfg
