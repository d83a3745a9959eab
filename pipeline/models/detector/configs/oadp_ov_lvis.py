# OADP on OV-LVIS (method 6.9, reference main branch): bbox/object/block heads with ViLD classifiers on the DetPro
# prompts (train 0.01, val 0.007), global head with a ViLD classifier at the default temperatures (0.007 / 0.01),
# a class-agnostic FCN mask head, 2x schedule, repeat-factor sampling.
# [quirk] the released checkpoint was trained WITHOUT the global head: --cfg-options model.global_head=None
# (or the config oadp_ov_lvis_released) reproduces it; the default keeps the head the paper describes.
_base_ = [
    "./_base_/datasets/ov_lvis.py",
    "./_base_/models/oadp_faster_rcnn_r50_fpn.py",
    "./_base_/schedules/schedule_2x.py",
    "./_base_/default_runtime.py",
]
detpro = dict(_delete_=True, type="ViLDTextClassifier", prompts="detpro", tau_train=0.01, tau_val=0.007)
model = dict(
    roi_head=dict(
        bbox_head=dict(cls_predictor_cfg=detpro),
        object_head=dict(cls_predictor_cfg=dict(detpro, background_enabled=False)),
        block_head=dict(cls_predictor_cfg=detpro),
        mask_roi_extractor=dict(
            type="SingleRoIExtractor",
            roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        ),
        mask_head=dict(
            type="FCNMaskHead",
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=None,
            class_agnostic=True,
            loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
        ),
    ),
    global_head=dict(
        classifier=dict(_delete_=True, type="ViLDTextClassifier", prompts="detpro", tau_train=0.007, tau_val=0.01)
    ),
    train_cfg=dict(rcnn=dict(mask_size=28)),
    test_cfg=dict(rcnn=dict(mask_thr_binary=0.5)),
)
default_hooks = dict(checkpoint=dict(interval=1, by_epoch=True))
log_processor = dict(by_epoch=True)
