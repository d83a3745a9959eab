# OADP detector (method 6.1-6.5): Faster R-CNN R50-FPN (caffe-style ResNet, SyncBN neck and heads) with the three
# distillation branches. Runtime values are left as None and filled by pipeline.models.detector.config.fill_runtime:
# class names / counts (from the remapped annotation file), prompt files (``prompts`` names a prompt kind:
# vild | ml | detpro), cache shards, paths. Children remove a branch by setting its head to None.
norm_cfg = dict(type="SyncBN", requires_grad=True)  # BN when training in one process (fill_runtime)
vild_classifier = dict(type="ViLDTextClassifier", prompts="vild", tau_train=0.007, tau_val=0.01)
ml_classifier = dict(type="ScaledTextClassifier", prompts="ml")
bbox_coder = dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[0.1, 0.1, 0.2, 0.2])
conv_head = dict(
    type="Shared4Conv1FCBBoxHead",
    in_channels=256,
    conv_out_channels=256,
    fc_out_channels=1024,
    roi_feat_size=7,
    norm_cfg=norm_cfg,
    num_classes=None,
    reg_class_agnostic=True,
    bbox_coder=bbox_coder,
    loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0),
    loss_bbox=dict(type="L1Loss", loss_weight=1.0),
)
model = dict(
    type="OADP",
    asl_frozen=True,  # [quirk] the reference never steps the ASL weights: 4/2000 (global), 16/1000 (block)
    warmup=200,
    data_preprocessor=dict(
        type="DetDataPreprocessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
    ),
    backbone=dict(
        type="ResNet",
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=True,
        style="caffe",
    ),
    neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5, norm_cfg=norm_cfg),
    rpn_head=dict(
        type="RPNHead",
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(type="AnchorGenerator", scales=[8], ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
        loss_cls=dict(type="CrossEntropyLoss", use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    ),
    roi_head=dict(
        type="OADPRoIHead",
        num_base=None,
        asl_frozen=True,
        weights=dict(object=256.0, block=128.0, relation=8.0, block_asl=16.0, warmup=200, asl_end=1000),
        bbox_roi_extractor=dict(
            type="SingleRoIExtractor",
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
            roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=0),
        ),
        bbox_head=dict(conv_head, cls_predictor_cfg=vild_classifier),
        object_head=dict(conv_head, with_reg=False, cls_predictor_cfg=dict(vild_classifier, background_enabled=False)),
        block_head=dict(
            type="Shared2FCBBoxHead",
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=None,
            with_reg=False,
            reg_class_agnostic=True,
            bbox_coder=bbox_coder,
            cls_predictor_cfg=ml_classifier,
        ),
    ),
    global_head=dict(type="GlobalHead", in_channels=256, classifier=ml_classifier),
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
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(
                type="MaxIoUAssigner",
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=False,
                ignore_iof_thr=-1,
            ),
            sampler=dict(type="RandomSampler", num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
            pos_weight=-1,
            debug=False,
        ),
    ),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type="nms", iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.0, nms=dict(type="nms", iou_threshold=0.5), max_per_img=300),
    ),
)
