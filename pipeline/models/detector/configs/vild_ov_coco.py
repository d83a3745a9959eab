# ViLD baseline on OV-COCO (method 6.9): bbox and object heads with ViLD classifiers on the vild prompts
# (train 0.01, val 0.007); object distillation only: no block head, no global head, no bbox-head lr_mult.
_base_ = [
    "./_base_/datasets/ov_coco.py",
    "./_base_/models/oadp_faster_rcnn_r50_fpn.py",
    "./_base_/schedules/schedule_40k.py",
    "./_base_/default_runtime.py",
]
vild = dict(type="ViLDTextClassifier", prompts="vild", tau_train=0.01, tau_val=0.007)
model = dict(
    roi_head=dict(
        bbox_head=dict(cls_predictor_cfg=vild),
        object_head=dict(cls_predictor_cfg=dict(vild, background_enabled=False)),
        block_head=None,
    ),
    global_head=None,
)
