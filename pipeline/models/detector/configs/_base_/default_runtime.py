# Runtime shared by every experiment: mmdet scope, seed 3407, logs every 50 iterations, TensorBoard + JSON scalars,
# checkpoints every 2,000 iterations (method 6.8; optimiser steps: with gradient accumulation the intervals are
# multiplied, pipeline/models/training.py), resume from the work dir's last checkpoint (a killed or requeued job
# continues where it stopped, with the random states it had).
default_scope = "mmdet"
custom_imports = dict(
    imports=[
        "pipeline.models.detector.modules",
        "pipeline.models.detector.roi_head",
        "pipeline.models.detector.model",
        "pipeline.models.detector.transforms",
        "pipeline.models.hooks",
    ],
    allow_failed_imports=False,
)
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=2000, by_epoch=False, max_keep_ckpts=2, save_last=True),
)
# torch's random states travel in every checkpoint: a resumed run samples as the uninterrupted one
# (pipeline/models/hooks.py)
custom_hooks = [dict(type="RandomStateHook")]
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl"))
vis_backends = [dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")]
visualizer = dict(type="DetLocalVisualizer", vis_backends=vis_backends, name="visualizer")
log_processor = dict(type="LogProcessor", window_size=50, by_epoch=False)
randomness = dict(seed=3407)
log_level = "INFO"
load_from = None  # the reference initialises from a SoCo checkpoint: --cfg-options load_from=PATH
resume = True
