# OV-LVIS data (method 6.6): base training annotations (866 of 1203 classes), masks loaded for the class-agnostic
# mask head, repeat-factor sampling (ClassBalancedDataset, oversample_thr 1e-3); CLIP features as for COCO.
_base_ = ["./ov_coco.py"]
train_pipeline = [
    dict(type="ReadImage"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="RandomResize", scale=[(1333, 640), (1333, 800)], keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="LoadCLIPFeatures", num_classes=None, globals_shards=[], blocks_shards=[], objects_shards=[]),
    dict(type="PackOADPInputs"),
]
train_dataloader = dict(
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        _delete_=True,
        type="ClassBalancedDataset",
        oversample_thr=1e-3,
        dataset=dict(
            type="LVISV1Dataset",
            data_root="",
            ann_file=None,
            data_prefix=dict(img=None),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=train_pipeline,
        ),
    ),
)
