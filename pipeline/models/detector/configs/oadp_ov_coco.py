# OADP on OV-COCO (method 6.9): bbox head ViLD classifier on the vild prompts with the default temperatures
# (train 0.007, val 0.01); object, block and global heads on the ml prompt (scaler/bias from the file);
# lr x0.5 on the bbox head.
_base_ = [
    "./_base_/datasets/ov_coco.py",
    "./_base_/models/oadp_faster_rcnn_r50_fpn.py",
    "./_base_/schedules/schedule_40k.py",
    "./_base_/default_runtime.py",
]
model = dict(
    roi_head=dict(
        object_head=dict(
            cls_predictor_cfg=dict(_delete_=True, type="ScaledTextClassifier", prompts="ml", background_enabled=False)
        )
    )
)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={"roi_head.bbox_head": dict(lr_mult=0.5)}))
