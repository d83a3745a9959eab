"""Stage ``proposals``: class-agnostic proposals for OAKE objects (method section 4).

Subcommands::

    train    an mmdet 3 RPN (ResNet-FPN) on the BASE annotations only (``.48`` / ``.866`` / ``.base``), by default
             mmdet's RPN 1x from an ImageNet backbone, 16 images per optimiser step on any number of GPUs
             (gradients accumulated; :mod:`pipeline.proposals.schedule`);
             resumable: restarts from the last checkpoint of its work dir when the same run made it (options,
             input contents, initial weights: ``pipeline.core.workdir``; other checkpoints move to ``stale/``)
    predict  run a trained RPN over every image of a split -> ``results/proposals/{dataset}/{folder}.h5``;
             an unreadable image stops it or, with ``--on-bad-image skip``, gets no proposals and is listed in the
             file's ``skipped`` attr (JSON list of ``{"image_id", "reason"}``; see :mod:`pipeline.core.images`)
    import   the reference's proposal pickles (list of [N, 5] arrays, ascending image id) through a restricted
             unpickler -> the same HDF5 format
    recall   AR@100/300/1000 of base and novel ground truth -> ``recall.json``

The written file holds per image boxes xyxy in original pixels and a score (CSR, ascending ids); attrs record
the model and the annotation hash.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import atomic, batching, cli, images, workdir
from pipeline.core import dry_run as dry
from pipeline.core.device import resolve_device
from pipeline.core.hashing import sha256_file
from pipeline.core.images import ON_BAD_IMAGE, list_images, max_pixels_option
from pipeline.core.options import Stage, option
from pipeline.core.progress import track
from pipeline.formats import proposal_file
from pipeline.proposals import config as rpn_config
from pipeline.proposals import recall
from pipeline.proposals.reference import load_proposal_pickle

log = logging.getLogger(__name__)
STAGE = Stage("python -m pipeline.proposals", __doc__)

IMAGENET_R50 = "pretrained/torchvision/resnet50-0676ba61.pth"  # the reference's path of torchvision's ImageNet R50


@dataclass(frozen=True)
class TrainOptions:
    """train: a class-agnostic RPN on the base annotations."""

    annotations: Path = option(help="BASE annotation file (input)")
    images: Path = option(help="training image folder (input)")
    work_dir: Path = option(help="checkpoints and logs; final.pth (output)")
    depth: int = option(50, help="ResNet depth of the backbone", choices=sorted(rpn_config.BACKBONE_CHANNELS))
    arch: str = option("rpn", help=rpn_config.ARCH_HELP, choices=sorted(rpn_config.ARCHS))
    backbone_init: str = option(
        "torchvision:" + IMAGENET_R50, help="random, torchvision:PATH (ImageNet ResNet) or detector:PATH (SoCo)"
    )
    epochs: float = option(12.0, help="schedule length in epochs over the training images (mmdet's RPN 1x)")
    iters: int | None = option(None, help="optimiser steps (none: from --epochs)")
    steps: tuple[float, ...] = option((8, 11), help="epochs after which lr x0.1 (with --iters: the same fractions)")
    batch_size: int = option(2, help="images per GPU")
    lr: float = option(0.02, help="SGD learning rate for --lr-batch images per optimiser step")
    lr_batch: int = option(16, help="images per optimiser step --lr is for: the reference batch")
    effective_batch: str = batching.mode_option("--lr-batch images")
    scale: int = option(800, help="short side of the training images")
    workers: int = option(2, help="data loader workers per process")
    checkpoint_every: int = option(200, help="optimiser steps between checkpoints")
    seed: int = option(3407, help="random seed")
    gpus: int = option(1, help="> 1: relaunch under torchrun, one process per GPU")
    dry_run: bool = option(
        False, help=f"{dry.ITERS} iterations on the first {dry.IMAGES} images of --annotations", action="store_true"
    )
    argv: tuple[str, ...] = field(default=())  # the raw arguments, for the torchrun relaunch (not an option)


@dataclass(frozen=True)
class PredictOptions:
    """predict: proposals for every image of a split."""

    checkpoint: Path = option(help="final.pth of train (input)")
    annotations: Path = option(help="annotation file listing the images (input)")
    images: Path = option(help="image folder (input)")
    output: Path = option(help="proposals .h5 (output)")
    max_per_img: int = option(1000, help="proposals kept per image (highest scores)")
    device: str = option("auto", help="auto (the first GPU if any, else cpu) or a torch device name")
    on_bad_image: str = option(
        "error",
        help="an unreadable image stops the job (error) or gets no proposals and is listed in attr skipped (skip)",
        choices=ON_BAD_IMAGE,
    )
    max_image_pixels: int | None = max_pixels_option()
    dry_run: bool = option(False, help=f"only the first {dry.IMAGES} images of --annotations", action="store_true")


@dataclass(frozen=True)
class ImportOptions:
    """import: the reference's proposal pickles through a restricted unpickler."""

    pickle: Path = option(help="list of [N, 5] arrays, ascending image id (input)")
    annotations: Path = option(help="annotation file listing the images (input)")
    output: Path = option(help="proposals .h5 (output)")
    images: Path | None = option(None, help="image folder (only recorded)")


@dataclass(frozen=True)
class RecallOptions:
    """recall: AR@100/300/1000 of base and novel ground truth."""

    proposals: Path = option(help="proposals .h5 (input)")
    annotations: Path = option(help="remapped val file with every class (input)")
    num_base: int = option(help="number of base classes (ids 0..K-1)")
    output: Path = option(help="recall.json (output)")
    dry_run: bool = option(
        False, help=f"only the ground truth of the first {dry.IMAGES} images of --annotations", action="store_true"
    )


Options = TrainOptions | PredictOptions | ImportOptions | RecallOptions


@STAGE.command("train", TrainOptions, "train a class-agnostic RPN on base annotations")
def run_train(opts: TrainOptions) -> None:
    cli.check_gpus(opts.gpus)
    kind, _, path = opts.backbone_init.partition(":")
    if path and not Path(path).is_file():
        raise ValueError(f"--backbone-init {opts.backbone_init}: no file {path} (relative to {Path.cwd()})")
    if kind == "random":
        log.warning("the RPN starts from random weights (--backbone-init random); mmdet's RPN starts from ImageNet")
    config = rpn_config.train_config(opts)  # reads the annotation file once
    if int(os.environ.get("RANK", "0")) == 0 and "LOCAL_RANK" not in os.environ:  # the launching process only
        workdir.guard_work_dir(opts.work_dir, config, dirs=[opts.images], run={"gpus": opts.gpus})
    if cli.relaunch_under_torchrun("pipeline.proposals", opts.gpus, opts.argv):
        return
    import torch
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.runner import Runner

    from pipeline.core import compat
    from pipeline.models import hooks  # noqa: F401  (registers the accumulation and random-state hooks)
    from pipeline.models.detector import transforms  # noqa: F401  (registers ReadImage)
    from pipeline.models.training import quiet_mmengine, schedule_line
    from pipeline.proposals import heads as proposal_heads  # noqa: F401  (registers OLNStyleRPNHead)

    compat.allow_mmengine_checkpoints()
    register_all_modules()
    cfg = Config(config)
    log.info("schedule: %s", schedule_line(cfg))
    workdir.initial_weights(cfg, opts.work_dir)
    runner = Runner.from_cfg(cfg)
    quiet_mmengine(runner.logger)
    with cli.also_to_log_file(runner.logger):  # iteration, loss, lr, ETA in the --log file too
        runner.train()
    if runner.rank != 0:
        return
    final = Path(opts.work_dir) / "final.pth"
    model = getattr(runner.model, "module", runner.model)  # unwrap DistributedDataParallel
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = dict(depth=opts.depth, scale=opts.scale, arch=opts.arch, annotations_sha256=sha256_file(opts.annotations))
    meta["batch"] = dict(cfg.batch)  # gpus, per_gpu, accumulation, effective, reference, mode
    with atomic.atomic_path(final, suffix=".pth") as tmp:
        torch.save({"state_dict": state, "meta": meta}, tmp)
    log.info("wrote %s", final)


def load_rpn(checkpoint: str | Path, device: str):
    """The trained RPN from ``final.pth`` (tensors and plain metadata only: ``weights_only=True``)."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import ConfigDict

    from pipeline.proposals import heads as proposal_heads  # noqa: F401  (registers OLNStyleRPNHead)

    register_all_modules()
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    meta = ckpt["meta"]
    model = MODELS.build(ConfigDict(rpn_config.rpn_model(int(meta["depth"]), "random", meta.get("arch", "rpn"))))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), meta


def predict(
    model,
    meta: dict,
    items,
    device: str,
    max_per_img: int,
    on_bad_image: str = "error",
    max_image_pixels: int | None = images.MAX_IMAGE_PIXELS,
) -> tuple[list, list, list, list]:
    """Run the RPN over ``items`` (``ImageItem``s) -> ids, boxes ``[n, 4]`` (original pixels), scores ``[n]`` and
    the skipped images ``{"image_id", "reason"}``.

    An unreadable image follows ``on_bad_image`` (:mod:`pipeline.core.images`): ``error`` raises ``ValueError`` naming
    it; ``skip`` gives it no proposals (its id stays in ``ids``, so that OAKE objects find every image). Runs under
    ``torch.inference_mode``."""
    import numpy as np
    import torch

    from pipeline.models.detector.inference import test_pipeline as rpn_test_pipeline

    _, test_pipeline = rpn_config.pipelines(int(meta["scale"]))
    policy = images.ImagePolicy(on_bad_image, max_image_pixels)
    pipeline = rpn_test_pipeline(test_pipeline)
    ids, boxes, scores = [], [], []
    with torch.inference_mode():
        for item in track(items, "proposals", unit="img", logger=log):
            image = policy.read(item)
            if image is None:
                ids.append(item.image_id)
                boxes.append(np.zeros((0, 4), np.float32))
                scores.append(np.zeros(0, np.float32))
                continue
            data = pipeline(item, image)
            batch = {"inputs": [data["inputs"]], "data_samples": [data["data_samples"]]}
            out = model.test_step(batch)[0].pred_instances
            order = torch.argsort(out.scores, descending=True)[:max_per_img]
            ids.append(item.image_id)
            boxes.append(out.bboxes[order].float().cpu().numpy())
            scores.append(out.scores[order].float().cpu().numpy())
    return ids, boxes, scores, policy.skipped


@STAGE.command("predict", PredictOptions, "proposals for every image of a split")
def run_predict(opts: PredictOptions) -> None:
    device = str(resolve_device(opts.device))
    model, meta = load_rpn(opts.checkpoint, device)
    items = list_images(opts.annotations, opts.images)
    if opts.dry_run:
        items = dry.select(items, opts.annotations)
    start = time.perf_counter()
    ids, boxes, scores, skipped = predict(
        model, meta, items, device, opts.max_per_img, opts.on_bad_image, opts.max_image_pixels
    )
    log.info("%d images in %.1f s, %d skipped as unreadable", len(ids), time.perf_counter() - start, len(skipped))
    attrs = {
        "model": f"{meta.get('arch', 'rpn')}_r{meta['depth']}_fpn",
        "checkpoint_sha256": sha256_file(opts.checkpoint),
        "annotations_sha256": sha256_file(opts.annotations),
        "train_annotations_sha256": meta["annotations_sha256"],
        "dry_run": bool(opts.dry_run),
        "skipped": json.dumps(skipped),
    }
    proposal_file.write(opts.output, ids, boxes, scores, attrs)


@STAGE.command("import", ImportOptions, "safe import of reference proposal pickles")
def run_import(opts: ImportOptions) -> None:
    arrays = load_proposal_pickle(opts.pickle)
    items = list_images(opts.annotations, opts.images or ".")
    if len(arrays) != len(items):
        raise ValueError(f"{opts.pickle}: {len(arrays)} entries for {len(items)} images in {opts.annotations}")
    ids = [it.image_id for it in items]  # ascending image id: the reference's proposal_sorted=True
    attrs = {"model": "imported", "source": str(opts.pickle), "source_sha256": sha256_file(opts.pickle)}
    attrs["annotations_sha256"] = sha256_file(opts.annotations)
    proposal_file.write(opts.output, ids, [a[:, :4] for a in arrays], [a[:, 4] for a in arrays], attrs)


@STAGE.command("recall", RecallOptions, "average recall of base and novel boxes")
def run_recall(opts: RecallOptions) -> None:
    data = atomic.read_json(opts.annotations)
    if opts.dry_run:  # the dry-run proposals cover only the dry-run image set
        data = dry.restrict(data)
    report = recall.recall_report(data, proposal_file.ProposalFile(opts.proposals), opts.num_base)
    log.info("proposal recall: base %s | novel %s", report["base"], report["novel"])
    atomic.write_json(opts.output, {**report, "dry_run": opts.dry_run}, compact=False)


run, build_parser, main = STAGE.run, STAGE.build_parser, STAGE.main
