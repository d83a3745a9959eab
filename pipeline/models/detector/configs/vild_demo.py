# vild_ov_coco on the embedded demo dataset, slimmed for a CPU (_base_/cpu_slim.py): every branch of the
# full config is kept.
_base_ = ["./vild_ov_coco.py", "./_base_/cpu_slim.py"]
model = {{_base_.slim_model_object}}
train_pipeline = {{_base_.slim_train_pipeline}}
test_pipeline = {{_base_.slim_test_pipeline}}
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
train_cfg = {{_base_.slim_train_cfg}}
optim_wrapper = {{_base_.slim_optim_wrapper}}
auto_scale_lr = {{_base_.slim_auto_scale_lr}}
param_scheduler = {{_base_.slim_param_scheduler}}
default_hooks = {{_base_.slim_default_hooks}}
log_processor = {{_base_.slim_log_processor}}
