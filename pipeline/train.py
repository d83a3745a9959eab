"""Stage ``train``: ViLD / OADP detector training and inference (method section 6).

Subcommands::

    fit      train an experiment on base annotations with the OAKE caches its heads distil from. The experiment
             name is a config of ``pipeline/models/detector/configs`` (mmdet 3 style, ``_base_`` inheritance) or
             ``--config NAME_OR_FILE``; ``--cfg-options`` overrides keys (a variant's overrides, a seed). Every
             optimiser step sees the config's batch (16 images; gradients accumulated over 16 / (gpus x batch size)
             iterations, the schedule in optimiser steps) or, ``--effective-batch actual``,
             gpus x batch size images at an lr scaled to them; the log and final.pth's ``meta.batch`` say which.
             Resumes from the last checkpoint of its work dir when the same run made it (config,
             input contents, initial weights: ``pipeline.core.workdir``; other checkpoints move to ``stale/``);
             TensorBoard events in ``<work dir>/<timestamp>/vis_data``; writes ``final.pth`` (weights + the resolved
             config; weights-only loadable). ``--gpus N`` relaunches under torchrun.
    predict  run a trained detector over every image of a split -> COCO-format detections (remapped category ids;
             RLE masks when the config has a mask head); ``--regions`` also writes the bbox head's embedding of
             every ground-truth box (for the open-ended evaluation), and the object head's when there is one. An
             unreadable image stops it or, with ``--on-bad-image skip``, gets no detections and no regions
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.core import atomic, batching, cli, images, workdir
from pipeline.core import dry_run as dry
from pipeline.core.device import resolve_device
from pipeline.core.hashing import sha256_file
from pipeline.core.images import ON_BAD_IMAGE, list_images, max_pixels_option
from pipeline.core.options import Stage, dict_action, key_value, option
from pipeline.formats.detections import detection_record
from pipeline.models.detector.checkpoint import stored_prompts, write_checkpoint
from pipeline.models.detector.inference import load_detector

__all__ = ["STAGE", "build_parser", "detection_record", "load_detector", "main", "run", "stored_prompts"]

log = logging.getLogger(__name__)
STAGE = Stage("python -m pipeline.train", __doc__)
_CONFIGS = "shipped: vild_ov_coco, oadp_ov_coco, oadp_ov_lvis[_released], baseline_ov_coco, {baseline,vild,oadp}_demo"


_SHARDS_HELP = "OAKE {} shards of train (inputs)"


@dataclass(frozen=True)
class FitOptions:
    """fit: train an experiment on base annotations with the OAKE caches."""

    experiment: str = option(help="the experiment name (= its config name unless --config)")
    names_from: Path = option(help="remapped file with every class (input)")
    num_base: int = option(help="number of base classes (ids 0..K-1)")
    annotations: Path = option(help="remapped BASE training file (input)")
    images: Path = option(help="training image folder (input)")
    work_dir: Path = option(help="checkpoints and logs; final.pth (output)")
    config: str | None = option(None, help=f"config name or .py file (none: the experiment's); {_CONFIGS}")
    cfg_options: dict | None = option(
        None, help="dotted-key overrides, as mmdet's tools", nargs="+", action=dict_action
    )
    backbone: Path | None = option(
        None, help="ImageNet ResNet state dict (torchvision layout) initialising the backbone (input; before load_from)"
    )
    prompt: tuple[tuple[str, str], ...] = option(
        (), help="KIND=FILE prompt file (inputs; repeatable)", type=key_value, action="append"
    )
    globals: tuple[str, ...] = option((), help=_SHARDS_HELP.format("globals"))
    blocks: tuple[str, ...] = option((), help=_SHARDS_HELP.format("blocks"))
    objects: tuple[str, ...] = option((), help=_SHARDS_HELP.format("objects"))
    iters: int | None = option(None, help="optimiser steps (none: the config's schedule)")
    batch_size: int | None = option(None, help="images per GPU (none: the config's, 2)")
    workers: int | None = option(None, help="data loader workers per process (none: the config's)")
    gpus: int = option(1, help="> 1: relaunch under torchrun, one process per GPU")
    effective_batch: str = batching.mode_option("the config's batch (auto_scale_lr.base_batch_size: 16 images)")
    dry_run: bool = option(
        False, help=f"{dry.ITERS} iterations on the first {dry.IMAGES} images of --annotations", action="store_true"
    )
    argv: tuple[str, ...] = field(default=())  # the raw arguments, for the torchrun relaunch (not an option)


@dataclass(frozen=True)
class PredictOptions:
    """predict: COCO-format detections of a split."""

    checkpoint: Path = option(help="final.pth (input)")
    annotations: Path = option(help="file listing the images (input)")
    images: Path = option(help="image folder (input)")
    output: Path = option(help="detections JSON (output)")
    regions: Path | None = option(
        None, help="npz of the bbox head's embeddings of every ground-truth box (output; open-ended evaluation)"
    )
    device: str = option("auto", help="auto (the first GPU if any, else cpu) or a torch device name")
    ensemble: tuple[float, float] | None = option(
        None,
        help="bbox-head exponents of the inference ensemble (none: the trained config's, 2/3 1/3); "
        "1 1 scores by the bbox head alone, 0 0 by the object head alone",
        nargs=2,
        metavar=("LAMBDA_BASE", "LAMBDA_NOVEL"),
    )
    score_thr: float = option(
        0.0, help="keep detections scoring above this (reference 0.0: scores that underflow to 0 are dropped)"
    )
    on_bad_image: str = option(
        "error",
        help="an unreadable image stops the job (error) or is skipped: no detections, no regions (skip)",
        choices=ON_BAD_IMAGE,
    )
    max_image_pixels: int | None = max_pixels_option()
    dry_run: bool = option(False, help=f"only the first {dry.IMAGES} images of --annotations", action="store_true")


Options = FitOptions | PredictOptions


def _config(opts: FitOptions, *, cuda: bool):
    from pipeline.models.detector.config import detector_config, train_dataset

    cats = sorted(atomic.read_json(opts.names_from)["categories"], key=lambda c: c["id"])
    world = int(os.environ.get("WORLD_SIZE", opts.gpus))
    cfg = detector_config(
        opts.config or opts.experiment,
        names=[c["name"] for c in cats],
        num_base=opts.num_base,
        prompts=dict(opts.prompt),
        annotations=str(opts.annotations),
        images=str(opts.images),
        shards={"globals": opts.globals, "blocks": opts.blocks, "objects": opts.objects},
        work_dir=str(opts.work_dir),
        options=opts.cfg_options,
        iters=dry.ITERS if opts.dry_run else opts.iters,
        batch_size=opts.batch_size,
        workers=opts.workers,
        world_size=world,
        cuda=cuda,
        backbone=None if opts.backbone is None else str(opts.backbone),
        effective_batch=opts.effective_batch,
        data_iters=dry.ITERS if opts.dry_run else None,  # a few iterations, whatever the accumulation
    )
    if opts.dry_run:  # the dry-run image set, which the dry-run OAKE shards hold (keyed by image id)
        from pipeline.models.detector.datasets import restrict_images

        restrict_images(train_dataset(cfg), dry.image_ids(opts.annotations))
    return cfg


@STAGE.command("fit", FitOptions, "train an experiment")
def run_fit(opts: FitOptions) -> None:
    import torch

    cli.check_gpus(opts.gpus)
    cfg = _config(opts, cuda=torch.cuda.is_available())
    check_initial_weights(cfg, opts.experiment)
    if int(os.environ.get("RANK", "0")) == 0 and "LOCAL_RANK" not in os.environ:  # the launching process only
        # the fingerprint sees load_from (initial weights) before a resume clears it
        workdir.guard_work_dir(opts.work_dir, cfg, dirs=[opts.images], run={"gpus": opts.gpus})
    if cli.relaunch_under_torchrun("pipeline.train", opts.gpus, opts.argv):
        return
    from mmengine.runner import Runner

    from pipeline.core import compat
    from pipeline.core.environment import environment
    from pipeline.models.detector import register_modules

    compat.allow_mmengine_checkpoints()
    register_modules()
    workdir.initial_weights(cfg, opts.work_dir)
    from pipeline.models.training import quiet_mmengine, schedule_line

    runner = Runner.from_cfg(cfg)
    quiet_mmengine(runner.logger)
    log.info("%s: %s", opts.experiment, schedule_line(cfg))
    prompts = stored_prompts(cfg)  # read as the model was built, not after training
    with cli.also_to_log_file(runner.logger):  # iteration, loss, lr, ETA in the --log file too
        runner.train()
    if runner.rank != 0:
        return
    model = getattr(runner.model, "module", runner.model)
    meta = {
        "experiment": opts.experiment,
        "argv": shlex.join(opts.argv),
        "config": cfg.to_dict(),
        "batch": dict(cfg.batch),  # gpus, per_gpu, accumulation, effective, reference, mode
        "prompts": prompts,
        "environment": environment(),
    }
    write_checkpoint(opts.work_dir / "final.pth", model.state_dict(), meta)
    log.info("wrote %s", opts.work_dir / "final.pth")


def check_initial_weights(cfg, experiment: str) -> None:
    """The initial weights of a config: ``load_from`` (the whole detector, non-strict) and the backbone's
    ``init_cfg`` checkpoint. A named local file that does not exist is an error naming it; neither is a warning (the
    detector trains from random weights); the ones given are logged."""
    files = {
        "load_from": cfg.get("load_from"),
        "backbone checkpoint": (cfg.model.backbone.get("init_cfg") or {}).get("checkpoint"),
    }
    for what, path in files.items():
        if path and "://" not in str(path) and not Path(path).is_file():
            raise ValueError(f"{experiment}: {what} {path}: no such file (relative to {Path.cwd()})")
    given = {what: str(path) for what, path in files.items() if path}
    if given:
        log.info("%s: initial weights %s", experiment, given)
    else:
        log.warning(
            "%s: no initial weights (no load_from, no backbone checkpoint): training from random weights", experiment
        )


def _encode_masks(masks) -> list[dict]:
    import numpy as np
    import pycocotools.mask as mask_utils

    out = []
    for m in masks:
        rle = mask_utils.encode(np.asfortranarray(m.cpu().numpy().astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append(rle)
    return out


@STAGE.command("predict", PredictOptions, "COCO-format detections of a split")
def run_predict(opts: PredictOptions) -> None:
    import torch

    with torch.inference_mode():
        _predict(opts)


def _predict(opts: PredictOptions) -> None:
    import numpy as np
    import torch

    from pipeline.models.detector.inference import predict

    device = str(resolve_device(opts.device))
    model, cfg, meta = load_detector(opts.checkpoint, device)
    model.roi_head.test_cfg["score_thr"] = opts.score_thr
    if opts.ensemble is not None:
        if getattr(model.roi_head, "object_head", None) is None:
            raise ValueError(f"predict --ensemble: {opts.checkpoint} has no object head to ensemble with")
        from pipeline.models.detector.roi_head import ensemble_exponents

        lambda_base, lambda_novel = opts.ensemble
        try:
            model.roi_head.ensemble = ensemble_exponents({"lambda_base": lambda_base, "lambda_novel": lambda_novel})
        except ValueError as err:
            raise ValueError(f"predict --ensemble: {err}") from None
    policy = images.ImagePolicy(opts.on_bad_image, opts.max_image_pixels)
    coco = atomic.read_json(opts.annotations)
    anns_by_image: dict[int, list[dict]] = {}
    for ann in coco.get("annotations", []):
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    keys = ("ann_ids", "image_ids", "category_ids", "iscrowd", "embeddings", "object_embeddings")
    detections, regions = [], {k: [] for k in keys}
    object_head = getattr(model.roi_head, "object_head", None)
    items = list_images(opts.annotations, opts.images)
    items = dry.select(items, opts.annotations) if opts.dry_run else items
    for pred in predict(model, cfg, items, policy, f"train predict {meta['experiment']}", log):
        item, out, feats, samples = pred.item, pred.instances, pred.feats, pred.samples
        rles = _encode_masks(out.masks) if "masks" in out else None
        for i, (box, score, label) in enumerate(
            zip(out.bboxes.tolist(), out.scores.tolist(), out.labels.tolist(), strict=True)
        ):
            det = detection_record(item.image_id, box, score, label)
            if rles is not None:
                det["segmentation"] = rles[i]
            detections.append(det)
        anns = anns_by_image.get(item.image_id, [])
        if opts.regions is not None and anns:
            scale = samples[0].metainfo["scale_factor"]  # (w, h) factors of the resize
            boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32, device=feats[0].device)
            boxes = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)
            boxes *= boxes.new_tensor([scale[0], scale[1], scale[0], scale[1]])
            _, embeddings = model.roi_head._branch(model.roi_head.bbox_head, feats, [boxes])
            regions["embeddings"].append(embeddings.float().cpu().numpy())
            if object_head is not None:
                _, object_embeddings = model.roi_head._branch(object_head, feats, [boxes])
                regions["object_embeddings"].append(object_embeddings.float().cpu().numpy())
            regions["ann_ids"] += [a["id"] for a in anns]
            regions["image_ids"] += [item.image_id] * len(anns)
            regions["category_ids"] += [a["category_id"] for a in anns]
            regions["iscrowd"] += [int(a.get("iscrowd", 0)) for a in anns]
    atomic.write_json(opts.output, detections)
    log.info(
        "%d detections on %d images (%d skipped as unreadable) -> %s (checkpoint %s)",
        len(detections),
        len(items) - len(policy.skipped),
        len(policy.skipped),
        opts.output,
        sha256_file(opts.checkpoint)[:12],
    )
    if opts.regions is not None:
        width = model.roi_head.bbox_head.fc_cls.linear.out_features
        arrays = {
            "ann_ids": np.asarray(regions["ann_ids"], dtype=np.int64),
            "image_ids": np.asarray(regions["image_ids"], dtype=np.int64),
            "category_ids": np.asarray(regions["category_ids"], dtype=np.int64),
            "iscrowd": np.asarray(regions["iscrowd"], dtype=np.uint8),
            "embeddings": np.concatenate(regions["embeddings"]).astype(np.float32)
            if regions["embeddings"]
            else np.zeros((0, width), np.float32),
        }
        if object_head is not None:  # the distilled head's embedding of the same boxes (its own accuracy)
            arrays["object_embeddings"] = (
                np.concatenate(regions["object_embeddings"]).astype(np.float32)
                if regions["object_embeddings"]
                else np.zeros((0, object_head.fc_cls.linear.out_features), np.float32)
            )
        with atomic.atomic_path(opts.regions, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        log.info("%d ground-truth region embeddings -> %s", len(arrays["ann_ids"]), opts.regions)


run, build_parser, main = STAGE.run, STAGE.build_parser, STAGE.main


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
