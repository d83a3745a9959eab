"""The batch of an optimiser step (pipeline.core.batching) and what it does to the training configs: gradient
accumulation to the reference's 16 images in optimiser-step units, the old lr scaling behind one key, the plan-time
check with the nearest valid settings, and the schedule's log line."""

from __future__ import annotations

import pytest

from pipeline.core import batching
from pipeline.models.detector import config as C
from pipeline.models.training import schedule_line
from workflow.batches import check_batches

NAMES = ["c", "x", "a", "b"]
PROMPTS = {"vild": "vild.pth", "ml": "ml.pth", "detpro": "detpro.pth"}  # recorded as paths only; not read here


def test_plan_accumulates_to_the_reference_batch():
    for gpus, per_gpu, n in ((1, 2, 8), (2, 2, 4), (4, 2, 2), (8, 2, 1), (1, 16, 1), (2, 1, 8)):
        b = batching.plan(16, gpus, per_gpu)
        assert (b.accumulation, b.effective, b.lr_factor) == (n, 16, 1.0)
    b = batching.plan(16, 1, 2)
    assert b.describe() == "1 GPU x 2 images x 8 accumulated = 16 images per optimiser step (reference 16)"
    assert b.as_dict() == dict(gpus=1, per_gpu=2, accumulation=8, reference=16, mode="reference", effective=16)
    # actual: no accumulation, lr scaled to the real batch (mmengine's auto_scale_lr, the old behaviour)
    b = batching.plan(16, 1, 2, "actual")
    assert (b.accumulation, b.effective, b.lr_factor) == (1, 2, 0.125)
    assert b.describe().endswith("= 2 images per optimiser step (reference 16; lr x 0.125)")


def test_a_batch_that_does_not_divide_names_the_keys_and_the_nearest_valid_settings():
    with pytest.raises(ValueError) as err:
        batching.plan(16, 3, 2, keys="train")
    msg = str(err.value)
    assert "'train.gpus' x 'train.batch_size' = 3 x 2 = 6 images" in msg and "16 images per optimiser step" in msg
    # gpus 2 and 4 divide 16 with 2 images each; no batch size does on 3 GPUs; or give up accumulation
    assert "train.gpus 2 (batch_size 2); train.gpus 4 (batch_size 2); train.effective_batch actual" in msg
    with pytest.raises(ValueError, match=r"proposals.batch_size 2 \(gpus 2\); proposals.batch_size 4 \(gpus 2\)"):
        batching.plan(16, 2, 3, keys="proposals")
    assert batching.plan(16, 3, 2, "actual").effective == 6  # actual takes any batch
    with pytest.raises(ValueError, match="'train.effective_batch': 'big'"):
        batching.plan(16, 1, 2, "big")


def _detector(name, world_size=1, mode="reference", **kw):
    return C.detector_config(
        name, names=NAMES, num_base=3, prompts=PROMPTS, world_size=world_size, effective_batch=mode, **kw
    )


def test_coco_on_one_gpu_accumulates_eight_iterations_per_step_in_the_reference_units():
    ref = C.read_config("oadp_ov_coco")
    cfg = _detector("oadp_ov_coco")
    assert cfg.batch == dict(gpus=1, per_gpu=2, accumulation=8, reference=16, mode="reference", effective=16)
    assert cfg.optim_wrapper.accumulative_counts == 8
    assert cfg.optim_wrapper.optimizer.lr == 0.02 and cfg.auto_scale_lr.enable is False  # the config's lr, unscaled
    # the loop counts data iterations: 8 per optimiser step; checkpoints and log lines at the same steps
    assert cfg.train_cfg.max_iters == 8 * 40_000
    assert cfg.default_hooks.checkpoint.interval == 8 * ref.default_hooks.checkpoint.interval
    assert cfg.default_hooks.logger.interval == 8 * ref.default_hooks.logger.interval
    # the schedulers keep the reference's numbers and step once per optimiser step
    assert cfg.param_scheduler == ref.param_scheduler
    assert cfg.default_hooks.param_scheduler == dict(type="AccumulatedParamSchedulerHook", accumulation=8)
    # distillation warm-ups (counted per forward pass) reach full weight at the first forward of step 200
    assert cfg.model.warmup == cfg.model.roi_head.weights.warmup == 8 * 199 + 1
    assert {"type": "RandomStateHook"} in cfg.custom_hooks
    # 8 GPUs x 2 images are the reference's batch: nothing accumulated, nothing changed
    eight = _detector("oadp_ov_coco", world_size=8)
    assert eight.batch["accumulation"] == 1 and "accumulative_counts" not in eight.optim_wrapper
    assert eight.train_cfg.max_iters == 40_000 and eight.model.warmup == 200
    # --iters counts optimiser steps; the dry run fixes data iterations (the last step partial)
    short = _detector("oadp_ov_coco", iters=100)
    assert short.train_cfg.max_iters == 800 and short.param_scheduler[1].milestones == [75]
    dry = _detector("oadp_ov_coco", iters=4, data_iters=4)
    assert dry.train_cfg.max_iters == 4 and dry.optim_wrapper.accumulative_counts == 8


def test_actual_keeps_the_old_behaviour_and_lvis_keeps_its_epochs():
    cfg = _detector("oadp_ov_coco", mode="actual")
    assert cfg.batch["accumulation"] == 1 and cfg.batch["effective"] == 2
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=16)  # mmengine scales lr to 2 images
    assert cfg.train_cfg.max_iters == 40_000 and "accumulative_counts" not in cfg.optim_wrapper
    with pytest.raises(ValueError, match="oadp_ov_coco: config keys 'train.gpus' x 'train.batch_size' = 3 x 2"):
        _detector("oadp_ov_coco", world_size=3)
    lvis = _detector("oadp_ov_lvis", world_size=2)
    assert lvis.optim_wrapper.accumulative_counts == 4
    assert (
        lvis.train_cfg.max_epochs == 24
        and lvis.default_hooks.checkpoint == C.read_config("oadp_ov_lvis").default_hooks.checkpoint
    )
    # the demo configs are for their own 2 images: one CPU process accumulates nothing
    assert _detector("oadp_demo").batch == dict(
        gpus=1, per_gpu=2, accumulation=1, reference=2, mode="reference", effective=2
    )


def _workflow(**train):
    return {
        "experiments": ["vild_ov_coco", "oadp_ov_coco"],
        "train": {"gpus": 1, "batch_size": None, "effective_batch": "reference", "options": {}, "import": {}, **train},
        "proposals": {"import": None, "gpus": 1, "batch_size": 2, "lr_batch": 16, "effective_batch": "reference"},
        "prompts": {"kinds": ["vild", "ml"]},
    }


def test_the_plan_time_check_stops_a_batch_that_does_not_divide():
    check_batches(_workflow())
    check_batches(_workflow(gpus=4))
    with pytest.raises(
        ValueError, match="experiment vild_ov_coco: config keys 'train.gpus' x 'train.batch_size' = 3 x 2"
    ):
        check_batches(_workflow(gpus=3))
    check_batches(_workflow(gpus=3, effective_batch="actual"))
    # an imported experiment trains nothing
    check_batches(_workflow(gpus=3, **{"import": {"vild_ov_coco": "a.pth", "oadp_ov_coco": "b.pth"}}))
    rpn = _workflow()
    rpn["proposals"]["batch_size"] = 3
    with pytest.raises(ValueError, match="'proposals.gpus' x 'proposals.batch_size' = 1 x 3 = 3 images"):
        check_batches(rpn)


def test_schedule_line_names_steps_and_decay_or_its_absence():
    line = schedule_line(_detector("oadp_ov_coco"))
    assert line.startswith("1 GPU x 2 images x 8 accumulated = 16 images per optimiser step (reference 16), ")
    assert "40000 optimiser steps = 320000 data iterations, lr 0.02, linear warm-up over 500 steps" in line
    assert line.endswith("lr x0.1 after steps [30000]")
    flat = _detector("oadp_ov_coco", mode="actual")
    flat.param_scheduler = flat.param_scheduler[:1]
    line = schedule_line(flat)
    assert "40000 iterations, lr 0.02 for 16 images (mmengine scales it to the real batch)" in line
    assert line.endswith("no lr decay step (constant lr after the warm-up)")


def test_the_workflow_stops_a_batch_that_does_not_divide_before_any_job():
    from workflow import config_check, config_layers

    demo = {"clip": {"model": "OADP-Tiny-ViT-32", "weights": "random"}}  # the project's demo, no file from elsewhere

    def configure(cli):
        return config_check.configure(config_layers.merge(demo, cli), workdir_file=None)

    assert configure({"train": {"gpus": 2, "batch_size": 1}}).config["train"]["effective_batch"] == "reference"
    with pytest.raises(config_check.ConfigError, match="experiment baseline_demo: config keys 'train.gpus' x"):
        configure({"train": {"gpus": 3}})
    configure({"train": {"gpus": 3, "effective_batch": "actual"}})
    with pytest.raises(config_check.ConfigError, match="'proposals.gpus' x 'proposals.batch_size' = 1 x 4 = 4"):
        configure({"proposals": {"batch_size": 4}})  # the demo's RPN: lr_batch 2


def test_the_report_states_each_trainings_batch_beside_the_reference(tmp_path):
    import torch

    from pipeline.models.detector.checkpoint import write_checkpoint
    from pipeline.report import seeds

    batches = {
        "oadp_ov_coco": batching.plan(16, 1, 2).as_dict(),
        "vild_ov_coco": batching.plan(16, 1, 2).as_dict(),
        "oadp_fast": batching.plan(16, 2, 2, "actual").as_dict(),
    }
    for run, batch in batches.items():
        write_checkpoint(tmp_path / run / "final.pth", {"w": torch.zeros(1)}, {"experiment": run, "batch": batch})
    lines = seeds.environment_lines(tmp_path, [*batches, "imported_run"])  # a run without the record: no line
    assert lines[-2:] == [
        "- batch of oadp_ov_coco, vild_ov_coco: 1 GPU x 2 images x 8 accumulated = 16 images per optimiser step "
        "(reference 16), effective_batch reference",
        "- batch of oadp_fast: 2 GPUs x 2 images x 1 accumulated = 4 images per optimiser step (reference 16; lr x "
        "0.25), effective_batch actual",
    ]


@pytest.mark.parametrize("preset", ["ov_coco", "ov_lvis"])
def test_the_presets_accumulate_to_16_on_any_gpu_count_that_divides_it(preset):
    from pathlib import Path

    import yaml

    from workflow import config_check

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / f"workflow/presets/{preset}.yaml").read_text())
    config_check.fill_defaults(cfg, config_check.load_schema())
    assert cfg["train"]["effective_batch"] == cfg["proposals"]["effective_batch"] == "reference"
    for gpus in (1, 2, 4, 8):
        for stage in ("train", "proposals"):
            cfg[stage]["gpus"] = gpus
        check_batches(cfg)
        for entry in cfg["experiments"]:
            built = _detector(entry, world_size=gpus)
            assert built.batch["effective"] == 16 and built.batch["accumulation"] == 8 // gpus
    cfg["train"]["gpus"] = 3
    with pytest.raises(ValueError, match="nearest valid settings: train.gpus 2 \\(batch_size 2\\); train.gpus 4"):
        check_batches(cfg)


def test_batch_norm_layers_with_batch_statistics_are_counted():
    """Accumulation reproduces a large batch except in BatchNorm layers that compute batch statistics: frozen ones
    (eval mode, mmdet's norm_eval) are not counted, trainable ones are (the log names how many)."""
    import torch

    from pipeline.models.hooks import trainable_batch_norms

    model = torch.nn.Sequential(torch.nn.BatchNorm2d(4), torch.nn.BatchNorm1d(4), torch.nn.Conv2d(4, 4, 1))
    model.train()
    assert trainable_batch_norms(model) == 2
    model[0].eval()  # norm_eval: running statistics, as the detectors' backbone
    assert trainable_batch_norms(model) == 1


def test_the_plan_time_check_covers_variants_with_their_overrides():
    """A variant whose overrides change the loader's batch is checked as the variant, after train.options."""
    cfg = _workflow()
    cfg["variants"] = {"oadp-b3": {"from": "oadp_ov_coco", "options": {"train_dataloader.batch_size": 3}}}
    with pytest.raises(ValueError, match="variant oadp-b3: config keys 'train.gpus' x 'train.batch_size' = 1 x 3"):
        check_batches(cfg)
    cfg["train"]["import"] = {"oadp-b3": "c.pth"}  # an imported variant trains nothing
    check_batches(cfg)
    # a variant that only drops a head keeps its base's batch
    no_global = {"oadp-ng": {"from": "oadp_ov_coco", "options": {"model.global_head": None}}}
    check_batches({**_workflow(), "variants": no_global})
