"""A CPU training run of the full pyramid on demo data: every branch on, all losses finite, total loss falls."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import prompts
from pipeline.oake import globals as oake_globals
from tests.conftest import DEMO4, TINY, extract_caches, gt_proposals, make_demo_split, tiny_clip_args


@pytest.mark.slow
def test_oadp_trains_on_cpu_with_every_branch(tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner

    from pipeline import compat
    from pipeline.detector import register_modules
    from pipeline.detector.config import detector_config

    demo = make_demo_split(tmp_path, num_train=8, num_val=1)
    ann = demo / "annotations/instances_train.json"
    gt_proposals(ann, tmp_path / "p.h5", extra_box=[0, 0, 50, 50])
    extract_caches(ann, demo / "images/train", tmp_path, proposals=tmp_path / "p.h5")
    prompts.main(
        [
            "vild",
            "--names-from",
            str(tmp_path / "train.all.json"),
            "--model",
            TINY,
            "--weights",
            "random",
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "vild.pth"),
        ]
    )

    cfg = detector_config(
        names=list(DEMO4),
        num_base=3,
        prompts=str(tmp_path / "vild.pth"),
        ml_prompts=None,
        annotations=str(tmp_path / "train.base.json"),
        images=str(demo / "images/train"),
        shards={
            "globals": [str(tmp_path / "g.h5")],
            "blocks": [str(tmp_path / "b.h5")],
            "objects": [str(tmp_path / "o.h5")],
        },
        work_dir=str(tmp_path / "work"),
        depth=18,
        scale=256,
        iters=16,
        batch_size=2,
        lr=0.01,
        rpn_train=(500, 100),
        rois=64,
        sampling_ratio=2,
        workers=0,
        checkpoint_every=8,
        seed=0,
        warmup=1,
    )
    compat.allow_mmengine_checkpoints()
    register_modules()
    Runner.from_cfg(Config(cfg)).train()
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
    # distillation weights held constant (warmup=1) so that totals of different iterations compare
    total = [r["loss"] for r in rows]
    assert np.mean(total[-4:]) < np.mean(total[:4])


@pytest.mark.slow
def test_train_cli_fit_and_predict(tmp_path):
    from pipeline import train

    demo = make_demo_split(tmp_path, num_train=4, num_val=2)
    ann = demo / "annotations/instances_train.json"
    oake_globals.main([*tiny_clip_args(ann, demo / "images/train"), "--output", str(tmp_path / "g.h5")])
    prompts.main(
        [
            "vild",
            "--names-from",
            str(tmp_path / "train.all.json"),
            "--model",
            TINY,
            "--weights",
            "random",
            "--device",
            "cpu",
            "--output",
            str(tmp_path / "vild.pth"),
        ]
    )
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
        "--prompts",
        str(tmp_path / "vild.pth"),
        "--work-dir",
        str(work),
        "--depth",
        "18",
        "--scale",
        "256",
        "--iters",
        "3",
        "--rpn-pre",
        "300",
        "--rpn-post",
        "50",
        "--rois",
        "32",
        "--workers",
        "0",
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
        ]
    )
    dets = json.loads(out.read_text())
    val_ids = {im["id"] for im in json.loads((tmp_path / "val.all.json").read_text())["images"]}
    assert dets and {d["image_id"] for d in dets} <= val_ids
    assert all(0 <= d["category_id"] < 4 and 0 <= d["score"] <= 1 and len(d["bbox"]) == 4 for d in dets)
    assert max(sum(d["image_id"] == i for d in dets) for i in val_ids) == 300  # max_per_img
    with pytest.raises(ValueError, match="must start with one of"):
        train.branches_of("detr_demo")
