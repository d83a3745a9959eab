# OV-COCO data (method 6.6): base training annotations (48 classes annotated, 65 named), CLIP features loaded after
# resize/flip; images without base boxes or under 32 px are filtered. Paths, class names and cache shards are
# filled at run time (fill_runtime) from the Snakemake inputs.
train_pipeline = [
    dict(type="ReadImage"),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomResize", scale=[(1333, 640), (1333, 800)], keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="LoadCLIPFeatures", num_classes=None, globals_shards=[], blocks_shards=[], objects_shards=[]),
    dict(type="PackOADPInputs"),
]
test_pipeline = [
    dict(type="ReadImage"),
    dict(type="Resize", scale=(1333, 800), keep_ratio=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    batch_sampler=dict(type="AspectRatioBatchSampler"),
    dataset=dict(
        type="CocoDataset",
        data_root="",
        ann_file=None,
        data_prefix=dict(img=None),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
    ),
)
