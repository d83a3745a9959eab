"""A CPU training run of the full pyramid on demo data: every branch on, all losses finite, total loss falls."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import prompts
from pipeline.oake import globals as oake_globals
from tests.conftest import DEMO4, TINY, extract_caches, gt_proposals, make_demo_split, tiny_clip_args


def _vild_and_ml_prompts(tmp_path) -> dict[str, str]:
    """A vild prompt file of the tiny CLIP, and an ml-format file (same rows, scaler 20 / bias 4) for the scaled
    classifiers of the OADP config."""
    vild = tmp_path / "vild.pth"
    prompts.main(
        ["vild", "--names-from", str(tmp_path / "train.all.json"), "--model", TINY, "--weights", "random"]
        + ["--device", "cpu", "--output", str(vild)]
    )
    p = prompts.load(vild)
    prompts.save(tmp_path / "ml.pth", p["names"], p["embeddings"], {"kind": "ml (test)"}, scaler=20.0, bias=4.0)
    return {"vild": str(vild), "ml": str(tmp_path / "ml.pth")}


def _oadp_demo_setup(tmp_path, num_train=8):
    demo = make_demo_split(tmp_path, num_train=num_train, num_val=1)
    ann = demo / "annotations/instances_train.json"
    gt_proposals(ann, tmp_path / "p.h5", extra_box=[0, 0, 50, 50])
    extract_caches(ann, demo / "images/train", tmp_path, proposals=tmp_path / "p.h5")
    return demo, _vild_and_ml_prompts(tmp_path)


SLIM = {
    "model.roi_head.weights.warmup": 1,  # distillation weights constant, so totals of iterations compare
    "model.warmup": 1,
    "model.train_cfg.rpn_proposal.max_per_img": 100,
    "model.train_cfg.rcnn.sampler.num": 64,
    "randomness.seed": 0,
}


def _oadp_config(tmp_path, demo, prompt_files, iters, options=None):
    from pipeline.detector.config import detector_config

    return detector_config(
        "oadp_demo",
        names=list(DEMO4),
        num_base=3,
        prompts=prompt_files,
        annotations=str(tmp_path / "train.base.json"),
        images=str(demo / "images/train"),
        shards={
            "globals": [str(tmp_path / "g.h5")],
            "blocks": [str(tmp_path / "b.h5")],
            "objects": [str(tmp_path / "o.h5")],
        },
        work_dir=str(tmp_path / "work"),
        options={**SLIM, **(options or {})},
        iters=iters,
        batch_size=2,
        workers=0,
    )


@pytest.mark.slow
def test_oadp_trains_on_cpu_with_every_branch(tmp_path):
    from mmengine.runner import Runner

    from pipeline import compat
    from pipeline.detector import register_modules

    demo, prompt_files = _oadp_demo_setup(tmp_path)
    cfg = _oadp_config(tmp_path, demo, prompt_files, iters=16)
    assert cfg.model.roi_head.object_head.cls_predictor_cfg.type == "ScaledTextClassifier"
    compat.allow_mmengine_checkpoints()
    register_modules()
    Runner.from_cfg(cfg).train()
    lines = [
        json.loads(x) for x in sorted((tmp_path / "work").glob("*/vis_data/scalars.json"))[-1].read_text().splitlines()
    ]
    rows = [r for r in lines if "loss" in r]
    assert len(rows) == 16
    keys = (
        "loss_rpn_cls",
        "loss_cls",
        "loss_bbox",
        "loss_clip_objects",
        "loss_block",
        "loss_clip_blocks",
        "loss_clip_block_relations",
        "loss_global",
        "loss_clip_global",
    )
    for key in keys:
        assert all(key in r and np.isfinite(r[key]) for r in rows), key
    total = [r["loss"] for r in rows]
    assert np.mean(total[-4:]) < np.mean(total[:4])
    # TensorBoard events next to the JSON scalars
    assert list((tmp_path / "work").glob("*/vis_data/events.out.tfevents.*"))


@pytest.mark.slow
def test_kill_and_resume_continues_with_the_saved_state(tmp_path):
    """SIGKILL a training process after its first checkpoint; a new run in the same work dir starts at the saved
    iteration with the saved optimizer state (AdamW moments) and distillation warm-up counters."""
    import copy
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    from pipeline import compat
    from pipeline.detector import register_modules

    demo, prompt_files = _oadp_demo_setup(tmp_path, num_train=6)
    work = tmp_path / "work"
    opts = [f"{k}={v}" for k, v in {**SLIM, "model.roi_head.weights.warmup": 50, "model.warmup": 50}.items()]
    cmd = [sys.executable, "-m", "pipeline.train", "fit", "--experiment", "oadp_demo", "--num-base", "3"]
    cmd += ["--names-from", str(tmp_path / "train.all.json"), "--annotations", str(tmp_path / "train.base.json")]
    cmd += ["--images", str(demo / "images/train"), "--work-dir", str(work), "--iters", "40", "--workers", "0"]
    cmd += ["--prompt", f"vild={prompt_files['vild']}", "--prompt", f"ml={prompt_files['ml']}"]
    cmd += [
        "--globals",
        str(tmp_path / "g.h5"),
        "--blocks",
        str(tmp_path / "b.h5"),
        "--objects",
        str(tmp_path / "o.h5"),
    ]
    cmd += ["--cfg-options", *opts, "default_hooks.checkpoint.interval=3"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (work / "last_checkpoint").exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint file be complete (mmengine writes last_checkpoint after it)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "final.pth").exists()
    saved_path = (work / "last_checkpoint").read_text().strip()
    compat.allow_mmengine_checkpoints()  # the explicit allow-list of mmengine's checkpoint metadata
    saved = torch.load(saved_path, map_location="cpu", weights_only=True)
    saved_iter = saved["meta"]["iter"]
    assert 3 <= saved_iter < 40

    seen = {}

    class Record(Hook):
        def before_train(self, runner):
            seen["iter"] = runner.iter
            seen["optimizer"] = copy.deepcopy(runner.optim_wrapper.state_dict())  # training mutates it in place
            model = runner.model
            seen["roi_warmup"] = model.roi_head.get_extra_state()
            seen["global_warmup"] = model.get_extra_state()

    cfg = _oadp_config(
        tmp_path, demo, prompt_files, iters=40, options={"model.roi_head.weights.warmup": 50, "model.warmup": 50}
    )
    cfg.train_cfg.max_iters = saved_iter + 2  # finish quickly after the resume
    register_modules()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(Record())
    runner.train()
    assert seen["iter"] == saved_iter
    state_saved = saved["optimizer"]["state"]
    state_now = seen["optimizer"]["state"]
    assert state_saved.keys() == state_now.keys() and len(state_saved) > 10
    for key in state_saved:  # AdamW (the demo configs): step count and both moments of every parameter
        assert state_saved[key].keys() == state_now[key].keys() >= {"exp_avg", "exp_avg_sq", "step"}
        for name, value in state_saved[key].items():
            assert torch.equal(value, state_now[key][name]), (key, name)
    assert seen["optimizer"]["param_groups"][0]["lr"] == saved["optimizer"]["param_groups"][0]["lr"]
    # the warm-up counters continue: iteration = 1 + the saved number of steps
    assert seen["roi_warmup"]["object"]["iteration"] == saved_iter + 1
    assert seen["global_warmup"]["mse"]["iteration"] == saved_iter + 1
    assert runner.iter == saved_iter + 2


@pytest.mark.slow
def test_train_cli_fit_and_predict(tmp_path):
    from pipeline import train

    demo = make_demo_split(tmp_path, num_train=4, num_val=2)
    ann = demo / "annotations/instances_train.json"
    oake_globals.main([*tiny_clip_args(ann, demo / "images/train"), "--output", str(tmp_path / "g.h5")])
    prompt_files = _vild_and_ml_prompts(tmp_path)
    work = tmp_path / "train" / "baseline_demo"
    fit = [
        "fit",
        "--experiment",
        "baseline_demo",
        "--names-from",
        str(tmp_path / "train.all.json"),
        "--num-base",
        "3",
        "--annotations",
        str(tmp_path / "train.base.json"),
        "--images",
        str(demo / "images/train"),
        "--prompt",
        f"vild={prompt_files['vild']}",
        "--work-dir",
        str(work),
        "--iters",
        "3",
        "--workers",
        "0",
        "--cfg-options",
        "model.train_cfg.rpn_proposal.max_per_img=50",
        "model.train_cfg.rcnn.sampler.num=32",
        "model.test_cfg.rpn.max_per_img=1000",  # enough candidates that 300 survive the per-class NMS
    ]
    train.main(fit)
    out = tmp_path / "detections.json"
    train.main(
        [
            "predict",
            "--checkpoint",
            str(work / "final.pth"),
            "--annotations",
            str(tmp_path / "val.all.json"),
            "--images",
            str(demo / "images/val"),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--score-thr",
            "-1",  # keep the untrained model's underflowing scores: every box counts for the format checks
            "--regions",
            str(tmp_path / "regions.npz"),
        ]
    )
    dets = json.loads(out.read_text())
    with pytest.raises(SystemExit, match="no object head to ensemble with"):  # the baseline has one head only
        train.main(
            ["predict", "--checkpoint", str(work / "final.pth"), "--annotations", str(tmp_path / "val.all.json"),
             "--images", str(demo / "images/val"), "--output", str(tmp_path / "x.json"), "--ensemble", "1", "1"]
        )  # fmt: skip
    assert not (tmp_path / "x.json").exists()
    val_ids = {im["id"] for im in json.loads((tmp_path / "val.all.json").read_text())["images"]}
    assert dets and {d["image_id"] for d in dets} <= val_ids
    assert all(0 <= d["category_id"] < 4 and 0 <= d["score"] <= 1 and len(d["bbox"]) == 4 for d in dets)
    assert max(sum(d["image_id"] == i for d in dets) for i in val_ids) == 300  # max_per_img
    regions = np.load(tmp_path / "regions.npz", allow_pickle=False)
    assert "object_embeddings" not in regions.files  # the baseline has no object head
    val = json.loads((tmp_path / "val.all.json").read_text())
    assert sorted(regions["ann_ids"].tolist()) == sorted(a["id"] for a in val["annotations"])
    cat_of = {a["id"]: a["category_id"] for a in val["annotations"]}
    assert [cat_of[i] for i in regions["ann_ids"].tolist()] == regions["category_ids"].tolist()
    assert regions["embeddings"].shape == (len(val["annotations"]), 64)  # the tiny CLIP's embedding width
    np.testing.assert_allclose(np.linalg.norm(regions["embeddings"], axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="must start with one of"):
        train.branches_of("detr_demo")
    # final.pth carries the classifier's text embeddings: rebuilding the prompt file (or loading elsewhere) does not
    # change the detector
    trained = prompts.load(prompt_files["vild"])
    cats = sorted(json.loads((tmp_path / "train.all.json").read_text())["categories"], key=lambda c: c["id"])
    rows = trained["embeddings"][[trained["names"].index(c["name"]) for c in cats]]
    prompts.save(prompt_files["vild"], trained["names"], -trained["embeddings"], {"kind": "rebuilt"})
    model, _, meta = train.load_detector(work / "final.pth")
    torch.testing.assert_close(model.roi_head.bbox_head.fc_cls.embeddings, rows.float())
    assert set(meta["prompts"]) == {prompt_files["vild"]}
    Path(prompt_files["vild"]).unlink()
    model = train.load_detector(work / "final.pth")[0]  # the prompt file is gone
    torch.testing.assert_close(model.roi_head.bbox_head.fc_cls.embeddings, rows.float())


def test_checkpoints_of_another_config_are_set_aside_not_resumed(tmp_path):
    from pipeline import train

    work = tmp_path / "work"
    work.mkdir()
    (work / "iter_3.pth").write_bytes(b"old")
    (work / "last_checkpoint").write_text(str(work / "iter_3.pth"))
    (work / "final.pth").write_bytes(b"final")
    train.guard_work_dir(work, "a" * 64)  # no fingerprint yet: unknown origin
    assert not (work / "iter_3.pth").exists() and not (work / "last_checkpoint").exists()
    assert (work / "stale/unknown/iter_3.pth").read_bytes() == b"old"
    assert (work / "final.pth").exists()  # the DAG's output is Snakemake's business
    assert (work / "config.sha256").read_text().strip() == "a" * 64
    (work / "iter_6.pth").write_bytes(b"same config")
    (work / "last_checkpoint").write_text(str(work / "iter_6.pth"))
    train.guard_work_dir(work, "a" * 64)  # same config: resume
    assert (work / "iter_6.pth").exists() and (work / "last_checkpoint").exists()
    train.guard_work_dir(work, "b" * 64)  # changed config: set aside under the old fingerprint
    assert (work / f"stale/{'a' * 16}/iter_6.pth").read_bytes() == b"same config"
    assert (work / "config.sha256").read_text().strip() == "b" * 64


def test_no_novel_box_reaches_detector_training_data(tmp_path):
    """Build the OADP training dataset exactly as the trainer does and run its whole pipeline (CLIP features,
    block labels, packing) over every image: box labels, and block labels hold base classes only (image labels
    are made from the box labels),
    while the generated images do contain novel objects."""
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    from pipeline.detector import register_modules
    from pipeline.detector.config import train_dataset

    demo, prompt_files = _oadp_demo_setup(tmp_path, num_train=6)
    raw = json.loads((demo / "annotations/instances_train.json").read_text())
    novel_id = 1 + DEMO4.index("red star")
    assert sum(a["category_id"] == novel_id for a in raw["annotations"]) > 0  # novel objects are in the images
    register_all_modules()
    register_modules()
    cfg = _oadp_config(tmp_path, demo, prompt_files, iters=1)
    dataset = DATASETS.build(train_dataset(cfg))
    base_file = json.loads((tmp_path / "train.base.json").read_text())
    with_base = {a["image_id"] for a in base_file["annotations"] if not a.get("iscrowd")}
    assert len(dataset) == len(with_base) > 0  # images without a base box are filtered out (filter_empty_gt)
    base = set(range(3))
    for i in range(len(dataset)):
        sample = dataset[i]["data_samples"]
        assert set(sample.gt_instances.labels.tolist()) <= base
        blocks = sample.block_labels  # [n_blocks, K] multi-hot over every class
        assert blocks.shape[1] in (3, 4) and not blocks[:, 3:].any()


def test_detection_scores_keep_their_ranking_below_1e5():
    """The ensemble's novel-class scores are often far below 1e-5: a detection keeps 7 significant digits, so two
    such scores stay distinct and none becomes 0 (a fixed 5-decimal rounding made both 0.0, a tie)."""
    from pipeline.train import detection_record

    a = detection_record(3, [10.004, 20.0, 30.0, 45.5], 3.2e-9, 13)
    b = detection_record(3, [10.0, 20.0, 30.0, 45.5], 2.9e-9, 13)
    assert a["score"] == pytest.approx(3.2e-9, rel=1e-6) and b["score"] == pytest.approx(2.9e-9, rel=1e-6)
    assert a["score"] > b["score"] > 0
    assert a == {"image_id": 3, "category_id": 13, "bbox": [10.0, 20.0, 20.0, 25.5], "score": a["score"]}
    assert detection_record(1, [0, 0, 1, 1], 0.123456789, 0)["score"] == 0.1234568


def test_predict_regions_carry_the_object_heads_embeddings(tmp_path):
    """A detector with an object head (untrained vild_demo, saved as pipeline.train saves final.pth): the regions
    file has the object head's unit embeddings of the same boxes next to the bbox head's."""
    from mmdet.registry import MODELS

    from pipeline import train
    from pipeline.detector import register_modules
    from pipeline.detector.config import detector_config

    demo = make_demo_split(tmp_path, num_train=1, num_val=2)
    prompt_files = _vild_and_ml_prompts(tmp_path)
    register_modules()
    cfg = detector_config("vild_demo", names=list(DEMO4), num_base=3, prompts=prompt_files)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    meta = {"experiment": "vild_demo", "argv": "", "config": cfg.to_dict(), "prompts": train.stored_prompts(cfg)}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp_path / "final.pth")
    train.main(
        ["predict", "--checkpoint", str(tmp_path / "final.pth"), "--annotations", str(tmp_path / "val.all.json"),
         "--images", str(demo / "images/val"), "--output", str(tmp_path / "d.json"), "--device", "cpu",
         "--regions", str(tmp_path / "regions.npz")]
    )  # fmt: skip
    regions = np.load(tmp_path / "regions.npz", allow_pickle=False)
    n = len(json.loads((tmp_path / "val.all.json").read_text())["annotations"])
    assert regions["embeddings"].shape == regions["object_embeddings"].shape == (n, 64)
    np.testing.assert_allclose(np.linalg.norm(regions["object_embeddings"], axis=1), 1.0, atol=1e-5)
    assert not np.allclose(regions["object_embeddings"], regions["embeddings"])  # two heads, two embeddings
