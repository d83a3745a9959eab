"""Full mmengine configs for the ViLD / OADP detectors (method 6.1-6.8), built from explicit arguments.

``detector_config`` returns a plain dict for ``mmengine.Runner``: model (ResNet-FPN Faster R-CNN, text-embedding
classifiers, object / block / global branches as asked), the training dataloader (base annotations, CLIP features
loaded after resize/flip), SGD with linear warm-up and a step at 3/4 of the iterations, checkpoints for resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
CHANNELS = {18: [64, 128, 256, 512], 50: [256, 512, 1024, 2048]}


def _classifier(kind: str, prompts: str, names: Sequence[str], num_base: int, **extra) -> dict:
    if kind == "vild":
        return dict(type="ViLDTextClassifier", prompts=prompts, names=list(names), num_base=num_base, **extra)
    return dict(
        type="ScaledTextClassifier",
        prompts=prompts,
        names=list(names),
        num_base=num_base,
        **{k: v for k, v in extra.items() if not k.startswith("tau")},
    )


def _head(kind: str, num_classes: int, predictor: dict, reg: bool) -> dict:
    head = dict(
        in_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=num_classes,
        cls_predictor_cfg=predictor,
        reg_class_agnostic=True,
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        with_reg=reg,
    )
    if kind == "shared4conv1fc":
        return dict(
            head, type="Shared4Conv1FCBBoxHead", conv_out_channels=256, norm_cfg=dict(type="BN", requires_grad=True)
        )
    return dict(head, type="Shared2FCBBoxHead")


def detector_config(
    *,
    names: Sequence[str],
    num_base: int,
    prompts: str,
    ml_prompts: str | None,
    annotations: str,
    images: str,
    shards: dict[str, Sequence[str]],
    work_dir: str,
    branches: Sequence[str] = ("object", "block", "global"),
    depth: int = 50,
    scale: int = 800,
    iters: int = 40000,
    batch_size: int = 2,
    lr: float = 0.02,
    tau: tuple[float, float] = (0.01, 0.007),
    rpn_train: tuple[int, int] = (2000, 1000),
    rois: int = 512,
    sampling_ratio: int = 0,
    workers: int = 2,
    checkpoint_every: int = 2000,
    seed: int = 3407,
    asl_frozen: bool = True,
    warmup: int = 200,
    rpn_test: int = 1000,
) -> dict:
    """ViLD (``branches=("object",)``) or OADP (object + block + global) config. ``names`` are the classes in
    remapped-id order (bases first); ``shards`` maps globals/blocks/objects to the training split's shard files."""
    k = len(names)
    vild = dict(tau_train=tau[0], tau_val=tau[1])
    bbox_pred = _classifier("vild", prompts, names, num_base, **vild)
    object_pred = _classifier("vild", prompts, names, num_base, background_enabled=False, **vild)
    ml_kind, ml_file = ("ml", ml_prompts) if ml_prompts else ("vild", prompts)
    roi_head = dict(
        type="OADPRoIHead",
        num_base=num_base,
        asl_frozen=asl_frozen,
        weights=dict(warmup=warmup),
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=sampling_ratio),
        ),
        bbox_head=_head("shared4conv1fc", k, bbox_pred, reg=True),
        object_head=_head("shared4conv1fc", k, object_pred, reg=False) if "object" in branches else None,
        block_head=_head("shared2fc", k, _classifier(ml_kind, ml_file, names, num_base, **vild), reg=False)
        if "block" in branches
        else None,
    )
    model = dict(
        type="OADP",
        asl_frozen=asl_frozen,
        warmup=warmup,
        data_preprocessor=dict(type="DetDataPreprocessor", mean=MEAN, std=STD, bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(
            type="ResNet",
            depth=depth,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type="BN", requires_grad=True),
            norm_eval=True,
            style="pytorch",
        ),
        neck=dict(type="FPN", in_channels=CHANNELS[depth], out_channels=256, num_outs=5),
        rpn_head=dict(
            type="RPNHead",
            in_channels=256,
            feat_channels=256,
            anchor_generator=dict(
                type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]
            ),
            bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type="L1Loss", loss_weight=1.0),
        ),
        roi_head=roi_head,
        global_head=dict(
            type="GlobalHead", in_channels=256, classifier=_classifier(ml_kind, ml_file, names, num_base, **vild)
        )
        if "global" in branches
        else None,
        train_cfg=dict(
            rpn=dict(
                assigner=dict(
                    type="MaxIoUAssigner",
                    pos_iou_thr=0.7,
                    neg_iou_thr=0.3,
                    min_pos_iou=0.3,
                    match_low_quality=True,
                    ignore_iof_thr=-1,
                ),
                sampler=dict(type="RandomSampler", num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
                allowed_border=-1,
                pos_weight=-1,
                debug=False,
            ),
            rpn_proposal=dict(
                nms_pre=rpn_train[0], max_per_img=rpn_train[1], nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0
            ),
            rcnn=dict(
                assigner=dict(
                    type="MaxIoUAssigner",
                    pos_iou_thr=0.5,
                    neg_iou_thr=0.5,
                    min_pos_iou=0.5,
                    match_low_quality=False,
                    ignore_iof_thr=-1,
                ),
                sampler=dict(
                    type="RandomSampler", num=rois, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True
                ),
                pos_weight=-1,
                debug=False,
            ),
        ),
        test_cfg=dict(
            rpn=dict(nms_pre=1000, max_per_img=rpn_test, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
            rcnn=dict(score_thr=0.0, nms=dict(type="nms", iou_threshold=0.5), max_per_img=300),
        ),
    )
    size = (int(scale * 1333 / 800), scale)
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", scale=size, keep_ratio=True),
        dict(type="RandomFlip", prob=0.5),
        dict(
            type="LoadCLIPFeatures",
            num_classes=k,
            globals_shards=list(shards.get("globals", [])),
            blocks_shards=list(shards.get("blocks", [])),
            objects_shards=list(shards.get("objects", [])),
        ),
        dict(type="PackOADPInputs"),
    ]
    dataset = dict(
        type="CocoDataset",
        data_root="",
        ann_file=str(Path(annotations).resolve()),
        data_prefix=dict(img=str(Path(images).resolve()) + "/"),
        metainfo=dict(classes=tuple(names)),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=pipeline,
    )
    return dict(
        model=model,
        work_dir=str(work_dir),
        custom_imports=dict(
            imports=[
                "pipeline.detector.modules",
                "pipeline.detector.roi_head",
                "pipeline.detector.model",
                "pipeline.detector.transforms",
            ],
            allow_failed_imports=False,
        ),
        train_dataloader=dict(
            batch_size=batch_size,
            num_workers=workers,
            persistent_workers=False,
            sampler=dict(type="InfiniteSampler", shuffle=True),
            batch_sampler=dict(type="AspectRatioBatchSampler"),
            dataset=dataset,
        ),
        train_cfg=dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters + 1),
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=lr, momentum=0.9, weight_decay=2.5e-5)),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=min(500, iters)),
            dict(type="MultiStepLR", by_epoch=False, begin=0, end=iters, milestones=[int(iters * 0.75)], gamma=0.1),
        ],
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=1 if iters < 100 else 50),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=dict(
                type="CheckpointHook", interval=checkpoint_every, by_epoch=False, max_keep_ckpts=2, save_last=True
            ),
        ),
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl")),
        randomness=dict(seed=seed),
        default_scope="mmdet",
        log_level="INFO",
        resume=True,
    )
