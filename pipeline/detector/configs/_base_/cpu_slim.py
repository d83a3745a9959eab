# Slimmed settings for the embedded demo on a laptop CPU (named slim_*, applied by the *_demo configs); every OADP
# branch is kept. ResNet-18 FPN at 256 px, 1000 / 300 RPN proposals in training, 128 sampled RoIs per image, RoIAlign
# sampling_ratio 2, 200 RPN proposals at inference (a 4-conv head on 1000 RoIs costs ~5 s per image on a CPU), short
# warm-ups.
slim_model = dict(
    warmup=10,  # distillation warm-ups (200 of 40,000 iterations in the reference) cut to 10 of 60
    backbone=dict(depth=18, style="pytorch"),
    neck=dict(in_channels=[64, 128, 256, 512], norm_cfg=None),  # as the proposal RPN it can start from
    roi_head=dict(weights=dict(warmup=10), bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2))),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(max_per_img=200)),
)
slim_train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="Resize", scale=(426, 256), keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="LoadCLIPFeatures", num_classes=None, globals_shards=[], blocks_shards=[], objects_shards=[]),
    dict(type="PackOADPInputs"),
]
slim_test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=(426, 256), keep_ratio=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
slim_train_cfg = dict(max_iters=60, val_interval=61)
slim_param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=20),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=60, milestones=[45], gamma=0.1),
]
slim_default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=20))
slim_log_processor = dict(window_size=5)
