"""The mmengine configs of the proposal network: an mmdet 3 RPN ResNet-FPN (:func:`rpn_model`), its data
pipelines at a scale (:func:`pipelines`) and the whole training config of ``proposals train`` (:func:`train_config`:
mmdet's RPN 1x schedule from :mod:`pipeline.proposals.schedule`, the dry-run image set, LVIS's image prefix).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.core import atomic
from pipeline.core import dry_run as dry
from pipeline.models.training import accumulate
from pipeline.proposals import schedule

BACKBONE_CHANNELS = {18: [64, 128, 256, 512], 34: [64, 128, 256, 512], 50: [256, 512, 1024, 2048]}
ARCHS = {"rpn": "RPNHead", "oln": "OLNStyleRPNHead"}
ARCH_HELP = "rpn: objectness classification; oln: localisation quality (centerness), OLN-style"


def rpn_model(depth: int, backbone_init: str, arch: str = "rpn") -> dict:
    """mmdet 3 RPN R{depth}-FPN config (method 6.1's RPN settings); ``backbone_init``: ``random``,
    ``torchvision:PATH`` (an ImageNet ResNet state dict) or ``detector:PATH`` (a whole-detector checkpoint such as
    the reference's SoCo Mask R-CNN, loaded non-strictly by the runner: see :func:`train_config`)."""
    init_cfg = None
    if backbone_init.startswith("torchvision:"):
        init_cfg = dict(type="Pretrained", checkpoint=backbone_init.split(":", 1)[1])
    elif backbone_init != "random" and not backbone_init.startswith("detector:"):
        raise ValueError(f"backbone init {backbone_init!r}: use 'random', 'torchvision:PATH' or 'detector:PATH'")
    return dict(
        type="RPN",
        data_preprocessor=dict(
            type="DetDataPreprocessor",
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_size_divisor=32,
        ),
        backbone=dict(
            type="ResNet",
            depth=depth,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type="BN", requires_grad=True),
            norm_eval=True,
            style="pytorch",
            init_cfg=init_cfg,
        ),
        neck=dict(type="FPN", in_channels=BACKBONE_CHANNELS[depth], out_channels=256, num_outs=5),
        rpn_head=dict(
            type=ARCHS[arch],
            in_channels=256,
            feat_channels=256,
            anchor_generator=dict(
                type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]
            ),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
        train_cfg=dict(
            rpn=dict(
                assigner=dict(
                    type="MaxIoUAssigner", pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, ignore_iof_thr=-1
                ),
                sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
                allowed_border=-1,
                pos_weight=-1,
                debug=False,
            )
        ),
        test_cfg=dict(
            rpn=dict(nms_pre=2000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0)
        ),
    )


def pipelines(scale: int) -> tuple[list, list]:
    """mmdet's train and test pipelines at ``scale`` (the short side; the long side at most ``scale * 1333 / 800``)."""
    size = (int(scale * 1333 / 800), scale)
    train = [
        dict(type="ReadImage"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", scale=size, keep_ratio=True),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackDetInputs"),
    ]
    test = [
        dict(type="ReadImage"),
        dict(type="Resize", scale=size, keep_ratio=True),
        dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
    ]
    return train, test


def train_config(args: Any) -> dict:
    """The mmengine config of ``proposals train`` (``args``: its ``TrainOptions``, or a namespace with the same
    attributes)."""
    data = atomic.read_json(args.annotations)
    classes = tuple(c["name"] for c in sorted(data["categories"], key=lambda c: c["id"]))
    train_pipeline, _ = pipelines(args.scale)
    try:
        sched = schedule.schedule(
            images=schedule.training_images(data),
            epochs=args.epochs,
            iters=dry.ITERS if args.dry_run else args.iters,
            steps=args.steps,
            lr=args.lr,
            lr_batch=args.lr_batch,
            gpus=args.gpus,
            batch_size=args.batch_size,
            mode=args.effective_batch,
        )
    except ValueError as err:
        raise ValueError(f"{args.annotations}: {err}") from None
    iters = sched.iters
    # LVIS records name their image by coco_url (split folder included): mmdet's LVIS dataset, prefix one folder up
    lvis = bool(data["images"]) and "file_name" not in data["images"][0]
    images = Path(args.images).resolve()
    dataset = dict(
        type="LVISV1Dataset" if lvis else "CocoDataset",
        data_root="",
        ann_file=str(Path(args.annotations).resolve()),
        data_prefix=dict(img=str(images.parent if lvis else images) + "/"),
        metainfo=dict(classes=classes),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
    )
    if args.dry_run:  # the dry-run image set (pipeline.core.dry_run), after mmdet's filter
        from pipeline.models.detector.datasets import restrict_images

        restrict_images(dataset, dry.image_ids(args.annotations))
    config = dict(
        model=rpn_model(args.depth, args.backbone_init, args.arch),
        work_dir=str(args.work_dir),
        train_dataloader=dict(
            batch_size=args.batch_size,
            num_workers=args.workers,
            persistent_workers=False,
            sampler=dict(type="InfiniteSampler", shuffle=True),
            batch_sampler=dict(type="AspectRatioBatchSampler"),
            dataset=dataset,
        ),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters + 1),
        optim_wrapper=dict(
            type="OptimWrapper", optimizer=dict(type="SGD", lr=sched.lr, momentum=0.9, weight_decay=1e-4)
        ),
        param_scheduler=sched.param_scheduler(),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=1 if iters < 50 else 20),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(
                type="CheckpointHook", interval=args.checkpoint_every, by_epoch=False, max_keep_ckpts=2, save_last=True
            ),
        ),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl")),
        launcher="pytorch" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "none",
        randomness=dict(seed=args.seed),
        default_scope="mmdet",
        log_level="INFO",
        resume=True,
        # a detector checkpoint initialises every module with a matching name (backbone, neck, rpn_head), loaded
        # non-strictly by a fresh run; a resumed run ignores it (pipeline.core.workdir.initial_weights)
        load_from=args.backbone_init.split(":", 1)[1] if args.backbone_init.startswith("detector:") else None,
        custom_hooks=[dict(type="RandomStateHook")],  # a resumed run samples anchors as the uninterrupted one
        batch=sched.batch.as_dict(),
    )
    # optimiser steps of lr_batch images: accumulated over several iterations (pipeline.models.training)
    accumulate(config, sched.batch.accumulation, sched.batch.per_gpu)
    if args.dry_run:  # a few iterations whatever the accumulation (the last optimiser step partial)
        config["train_cfg"].update(max_iters=iters, val_interval=iters + 1)
        checkpoint = config["default_hooks"]["checkpoint"]
        checkpoint["interval"] = min(checkpoint["interval"], iters)
    return config
