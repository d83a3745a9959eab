# LVIS "2x" (method 6.8): 24 epochs, x0.1 at epochs 16 and 19, optimizer as for COCO (epoch checkpoints:
# oadp_ov_lvis.py).
_base_ = ["./schedule_40k.py"]
train_cfg = dict(_delete_=True, type="EpochBasedTrainLoop", max_epochs=24, val_interval=25)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", by_epoch=True, begin=0, end=24, milestones=[16, 19], gamma=0.1),
]
