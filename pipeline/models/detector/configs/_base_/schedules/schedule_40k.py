# COCO "40k" (method 6.8): 40,000 iterations, lr 0.02 for 16 images per iteration (auto-scaled to the real batch),
# linear warm-up 500 iterations from 0.001, x0.1 at 30,000; SGD momentum 0.9, weight decay 2.5e-5; fp16 with
# dynamic loss scale from 64 (on a GPU; plain fp32 on a CPU). Checkpoints: default_runtime.py.
max_iters = 40000
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters + 1)
optim_wrapper = dict(
    type="AmpOptimWrapper",
    loss_scale=dict(init_scale=64.0),
    optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=2.5e-5),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters, milestones=[30000], gamma=0.1),
]
auto_scale_lr = dict(enable=True, base_batch_size=16)
