"""A CPU training run of the full pyramid on demo data: every branch on, all losses finite, total loss falls."""

from __future__ import annotations

import json
import re
import shutil
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
    from pipeline.models.detector.config import detector_config

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

    from pipeline.core import compat
    from pipeline.models.detector import register_modules

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

    from pipeline.core import compat
    from pipeline.models.detector import register_modules

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
    log_file = tmp_path / "logs/train/baseline_demo.log"
    fit = [
        "--log",
        str(log_file),
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
    # the runner's iteration lines (loss, lr, ETA) reach the --log file, not only its own log
    iteration = re.compile(r"Iter\(train\) \[\s*\d+/3\].*lr: \S+.*eta: \S+.*loss: \d")
    assert any(iteration.search(line) for line in log_file.read_text().splitlines())
    assert " DEBUG " not in log_file.read_text()  # at the stage's level: mmengine's registry chatter stays out
    # mmengine's notices a user cannot act on are filtered (pipeline.models.training.MMENGINE_NOISE); the batch and
    # schedule of the run are said instead
    text = log_file.read_text() + _newest_run_log(work)
    assert "FileClient" not in text and "HardDiskBackend" not in text
    assert "baseline_demo: 1 GPU x 2 images x 1 accumulated = 2 images per optimiser step (reference 2), 3 " in text
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
    with pytest.raises(ValueError, match="no object head to ensemble with"):  # the baseline has one head only
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
    # final.pth carries the classifier's text embeddings: rebuilding the prompt file (or loading elsewhere) does not
    # change the detector
    trained = prompts.load(prompt_files["vild"])
    cats = sorted(json.loads((tmp_path / "train.all.json").read_text())["categories"], key=lambda c: c["id"])
    rows = trained["embeddings"][[trained["names"].index(c["name"]) for c in cats]]
    prompts.save(prompt_files["vild"], trained["names"], -trained["embeddings"], {"kind": "rebuilt"})
    model, _, meta = train.load_detector(work / "final.pth")
    torch.testing.assert_close(model.roi_head.bbox_head.fc_cls.embeddings, rows.float())
    assert set(meta["prompts"]) == {prompt_files["vild"]}
    assert meta["batch"] == dict(gpus=1, per_gpu=2, accumulation=1, reference=2, mode="reference", effective=2)
    Path(prompt_files["vild"]).unlink()
    model = train.load_detector(work / "final.pth")[0]  # the prompt file is gone
    torch.testing.assert_close(model.roi_head.bbox_head.fc_cls.embeddings, rows.float())


def _killed_in_second_iteration(work: Path) -> None:
    """Leave a work dir whose run of 2 iterations finished as a run killed in its second iteration leaves it:
    ``iter_1.pth`` named by ``last_checkpoint`` (an absolute path, as mmengine writes it), no ``final.pth``."""
    (work / "final.pth").unlink()
    (work / "iter_2.pth").unlink()
    (work / "last_checkpoint").write_text(str((work / "iter_1.pth").resolve()))


def _newest_run_log(work: Path) -> str:
    return sorted(work.glob("2*/2*.log"))[-1].read_text()


def _resumed(work: Path) -> bool:
    """Whether the newest run of ``work`` resumed the checkpoint of iteration 1 (and trained iteration 2)."""
    log = _newest_run_log(work)
    return "resumed epoch: 0, iter: 1" in log and (work / "final.pth").is_file()


def _stale(work: Path) -> list[str]:
    """The checkpoint files set aside in ``stale/`` so far."""
    return sorted(p.name for p in (work / "stale").rglob("*") if p.is_file())


@pytest.mark.slow
def test_fit_resumes_only_the_same_run(tmp_path, monkeypatch):
    """Through ``train fit`` (2 iterations, a checkpoint each): a killed run resumes with the same inputs, also
    after the project folder moved; changed annotation contents, a new ``load_from`` and changed contents of the
    ``load_from`` file start afresh, the old checkpoints set aside in ``stale/``."""
    from mmdet.visualization import DetLocalVisualizer

    from pipeline import train

    project = tmp_path / "project"
    demo = make_demo_split(project, num_train=4, num_val=1)
    _vild_and_ml_prompts(project)
    monkeypatch.chdir(project)
    work = Path("work")

    def fit(*options: str) -> None:
        # in the DAG every run is a process of its own; here each run needs a new global visualizer (mmengine keeps
        # the first one, which writes into the first run's folder)
        DetLocalVisualizer._instance_dict.clear()
        train.main(
            ["fit", "--experiment", "baseline_demo", "--names-from", "train.all.json", "--num-base", "3",
             "--annotations", "train.base.json", "--images", str(demo.relative_to(project) / "images/train"),
             "--prompt", "vild=vild.pth", "--work-dir", str(work), "--iters", "2", "--workers", "0",
             "--cfg-options", "model.train_cfg.rpn_proposal.max_per_img=50", "model.train_cfg.rcnn.sampler.num=32",
             "default_hooks.checkpoint.interval=1", *options]
        )  # fmt: skip

    fit()
    assert (work / "iter_1.pth").is_file() and not _stale(work)
    _killed_in_second_iteration(work)
    fit()  # the same run
    assert _resumed(work) and not _stale(work)

    _killed_in_second_iteration(work)
    moved = tmp_path / "moved"
    project.rename(moved)  # every absolute path changes, last_checkpoint names the old place
    monkeypatch.chdir(moved)
    fit()
    assert _resumed(work) and not _stale(work)

    _killed_in_second_iteration(work)
    base = json.loads(Path("train.base.json").read_text())
    base["annotations"] = base["annotations"][:-1]
    Path("train.base.json").write_text(json.dumps(base))  # same path, other contents
    fit()
    assert not _resumed(work) and _stale(work) == ["iter_1.pth", "last_checkpoint"]

    shutil.copy(work / "final.pth", "init.pth")
    _killed_in_second_iteration(work)
    fit("load_from=init.pth")  # initial weights where there were none
    assert not _resumed(work) and "init.pth" in _newest_run_log(work) and len(_stale(work)) == 4
    _killed_in_second_iteration(work)
    fit("load_from=init.pth")  # the same run: its checkpoint, not the initial weights
    assert _resumed(work) and len(_stale(work)) == 4
    shutil.copy(work / "iter_1.pth", "init.pth")  # other initial weights under the same name
    _killed_in_second_iteration(work)
    fit("load_from=init.pth")
    assert not _resumed(work) and len(_stale(work)) == 6


def test_checkpoints_of_another_run_are_set_aside_not_resumed(tmp_path):
    from pipeline.core import workdir

    work = tmp_path / "work"
    work.mkdir()
    (work / "iter_3.pth").write_bytes(b"old")
    (work / "last_checkpoint").write_text(str(work / "iter_3.pth"))
    (work / "final.pth").write_bytes(b"final")
    a = workdir.guard_work_dir(work, {"lr": 0.1, "work_dir": str(work)})  # no fingerprint yet: unknown origin
    assert not (work / "iter_3.pth").exists() and not (work / "last_checkpoint").exists()
    assert (work / "stale/unknown/iter_3.pth").read_bytes() == b"old"
    assert (work / "final.pth").exists()  # the DAG's output is Snakemake's business
    assert (work / "config.sha256").read_text().strip() == a
    (work / "iter_6.pth").write_bytes(b"same config")
    (work / "last_checkpoint").write_text(str(work / "iter_6.pth"))
    assert workdir.guard_work_dir(work, {"lr": 0.1, "work_dir": "elsewhere"}) == a  # same run: resume
    assert (work / "iter_6.pth").exists() and (work / "last_checkpoint").exists()
    b = workdir.guard_work_dir(work, {"lr": 0.2, "work_dir": str(work)})  # changed: set aside under the old one
    assert (work / f"stale/{a[:16]}/iter_6.pth").read_bytes() == b"same config"
    assert (work / "config.sha256").read_text().strip() == b != a
    assert json.loads((work / "fingerprint.json").read_text()) == {"lr": 0.2}


def _tiny_shard(path: Path, rows: np.ndarray) -> None:
    from pipeline.formats.feature_cache import ShardWriter

    with ShardWriter(path, [1, 2], "globals", rows.shape[1], {"model": "test"}, fsync=False) as writer:
        for image_id, row in zip([1, 2], rows, strict=True):
            writer.add(image_id, row[None] / np.linalg.norm(row))
        writer.finalize()


def test_fingerprint_follows_input_contents_not_locations(tmp_path):
    """Every input file named in the config counts by its contents (an OAKE shard by its metadata and row
    checksums), the image folder by its listing; the project folder's location and the work dir do not count."""
    import shutil

    from pipeline.core import workdir

    a = tmp_path / "a"
    (a / "images").mkdir(parents=True)
    (a / "images/1.jpg").write_bytes(b"jpeg one")
    (a / "ann.json").write_text('{"images": []}')
    (a / "init.pth").write_bytes(b"weights")
    _tiny_shard(a / "g.h5", np.eye(2, 8, dtype=np.float32))

    def fingerprint(root: Path, **changes) -> str:
        cfg = {
            "work_dir": str(root / "work"),
            "dataset": {"ann_file": str(root / "ann.json"), "data_prefix": {"img": str(root / "images") + "/"}},
            "shards": [str(root / "g.h5")],
            "load_from": str(root / "init.pth"),
            "norm": "BN",
            "lr": 0.01,
            **changes,
        }
        return workdir.fingerprint(workdir.identified_config(cfg, dirs=[root / "images"]))

    before = fingerprint(a)
    assert workdir.content_id(a / "g.h5").startswith("shard:")
    shutil.copytree(a, tmp_path / "b")
    assert fingerprint(tmp_path / "b") == before  # a copied or moved project
    assert fingerprint(a, work_dir="other") == before
    assert fingerprint(a, lr=0.5) != before
    (a / "init.pth").write_bytes(b"other weights")
    assert fingerprint(a) != before
    shutil.copy(tmp_path / "b/init.pth", a / "init.pth")
    (a / "images/2.jpg").write_bytes(b"jpeg two")
    assert fingerprint(a) != before
    (a / "images/2.jpg").unlink()
    assert fingerprint(a) == before
    (a / "g.h5").unlink()
    _tiny_shard(a / "g.h5", np.eye(2, 8, k=1, dtype=np.float32))
    assert fingerprint(a) != before
    (a / "ann.json").write_text('{"images": [1]}')
    diff = workdir.differences(
        workdir.identified_config({"ann_file": str(tmp_path / "b/ann.json"), "lr": 0.01}),
        workdir.identified_config({"ann_file": str(a / "ann.json"), "lr": 0.01}),
    )
    assert diff == ["ann_file"]


def test_no_novel_box_reaches_detector_training_data(tmp_path):
    """Build the OADP training dataset exactly as the trainer does and run its whole pipeline (CLIP features,
    block labels, packing) over every image: box labels, and block labels hold base classes only (image labels
    are made from the box labels),
    while the generated images do contain novel objects."""
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    from pipeline.models.detector import register_modules
    from pipeline.models.detector.config import train_dataset

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


def _untrained_vild_checkpoint(tmp_path, num_val: int):
    """A demo split and ``tmp_path/final.pth`` of an untrained ``vild_demo`` (seeded), as ``train fit`` writes it."""
    from mmdet.registry import MODELS

    from pipeline import train
    from pipeline.models.detector import register_modules
    from pipeline.models.detector.config import detector_config

    demo = make_demo_split(tmp_path, num_train=1, num_val=num_val)
    prompt_files = _vild_and_ml_prompts(tmp_path)
    register_modules()
    cfg = detector_config("vild_demo", names=list(DEMO4), num_base=3, prompts=prompt_files)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    meta = {"experiment": "vild_demo", "argv": "", "config": cfg.to_dict(), "prompts": train.stored_prompts(cfg)}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp_path / "final.pth")
    return demo


def test_predict_regions_carry_the_object_heads_embeddings(tmp_path):
    """A detector with an object head (untrained vild_demo, saved as pipeline.train saves final.pth): the regions
    file has the object head's unit embeddings of the same boxes next to the bbox head's."""

    from pipeline import train

    demo = _untrained_vild_checkpoint(tmp_path, num_val=2)
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


def test_predict_refuses_or_skips_an_unreadable_image(tmp_path, capsys):
    """``--on-bad-image error`` stops with one line naming the file and id (traceback in the stage log); ``skip``
    gives the image no detections and no regions, and the other images theirs."""

    from pipeline import train
    from pipeline.core import cli

    demo = _untrained_vild_checkpoint(tmp_path, num_val=3)
    val = json.loads((tmp_path / "val.all.json").read_text())
    ids = sorted(im["id"] for im in val["images"])
    bad = demo / "images/val" / f"{ids[0]:012d}.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated: the decoder gets no image
    out, regions, log = tmp_path / "d.json", tmp_path / "regions.npz", tmp_path / "predict.log"
    argv = ["--log", str(log), "predict", "--checkpoint", str(tmp_path / "final.pth"), "--annotations",
            str(tmp_path / "val.all.json"), "--images", str(demo / "images/val"), "--output", str(out),
            "--device", "cpu", "--score-thr", "-1", "--regions", str(regions)]  # fmt: skip
    assert cli.run_main(train.main, argv) == 2
    err = capsys.readouterr().err
    line = f"{bad}: unreadable image, id {ids[0]}"
    assert f"ERROR pipeline: {line}" in err and not out.exists()
    assert "Traceback" not in err[err.index(f"ERROR pipeline: {line}") :]  # one line (mmengine may log before it)
    assert line in log.read_text() and "Traceback" in log.read_text()
    assert cli.run_main(train.main, [*argv, "--on-bad-image", "skip"]) == 0
    assert f"skipping {line}" in log.read_text()
    dets = json.loads(out.read_text())
    assert {d["image_id"] for d in dets} == set(ids[1:])
    arrays = np.load(regions, allow_pickle=False)
    expected = sorted(a["id"] for a in val["annotations"] if a["image_id"] != ids[0])
    assert sorted(arrays["ann_ids"].tolist()) == expected and ids[0] not in arrays["image_ids"].tolist()


# ---- gradient accumulation: an accumulated step is a large-batch step ------------------------------------------------

#: float32 agreement of the accumulated and the large-batch weights, relative to how far training moved them
ACCUMULATION_RTOL = 1e-4


def _first_k_sampler():
    """A RoI / anchor sampler that draws the same samples of an image whatever else the batch holds: mmdet's
    ``RandomSampler`` with each draw from a generator seeded by the pool's size instead of the global random
    stream (which a batch of 4 consumes in another order than two batches of 2: RPN 1-4 then R-CNN 1-4 against
    RPN 1-2, R-CNN 1-2, RPN 3-4, R-CNN 3-4)."""
    from mmdet.models.task_modules.samplers import RandomSampler
    from mmdet.registry import TASK_UTILS

    if "BatchIndependentSampler" in TASK_UTILS.module_dict:
        return

    @TASK_UTILS.register_module()
    class BatchIndependentSampler(RandomSampler):
        def random_choice(self, gallery, num):
            gallery = torch.as_tensor(gallery, dtype=torch.long)
            perm = torch.randperm(gallery.numel(), generator=torch.Generator().manual_seed(gallery.numel()))
            return gallery[perm[:num]]


@pytest.fixture(scope="module")
def accumulation_setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("accumulation")
    demo = make_demo_split(tmp, num_train=8, num_val=1)  # 256 x 256 images: the same padding in any batch
    return tmp, demo, _vild_and_ml_prompts(tmp)


def _baseline_run(setup, name, *, per_gpu, reference, mode="reference", iters=3, fixed_sampling=True, stop_at=None):
    """Train baseline_demo (R18-FPN, frozen BN statistics) with SGD for ``iters`` optimiser steps at ``per_gpu``
    images per iteration in one process, the config's batch ``reference``; ``stop_at`` data iterations end the run
    early (a checkpoint at its end), as a job stopped there. Returns the weights and the run's log text."""
    from mmengine.runner import Runner

    from pipeline.core import compat
    from pipeline.models.detector import register_modules
    from pipeline.models.detector.config import detector_config
    from pipeline.models.training import quiet_mmengine

    tmp, demo, prompt_files = setup
    register_modules()
    compat.allow_mmengine_checkpoints()
    options = {
        "randomness.seed": 0,
        "auto_scale_lr.base_batch_size": reference,
        "model.train_cfg.rpn_proposal.max_per_img": 50,
        "model.train_cfg.rcnn.sampler.num": 32,
    }
    if fixed_sampling:
        _first_k_sampler()
        options["model.train_cfg.rpn.sampler.type"] = "BatchIndependentSampler"
        options["model.train_cfg.rcnn.sampler.type"] = "BatchIndependentSampler"
    cfg = detector_config(
        "baseline_demo",
        names=list(DEMO4),
        num_base=3,
        prompts=prompt_files,
        annotations=str(tmp / "train.base.json"),
        images=str(demo / "images/train"),
        work_dir=str(tmp / name),
        options=options,
        iters=iters,
        batch_size=per_gpu,
        workers=0,
        effective_batch=mode,
    )
    cfg.optim_wrapper.optimizer = dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=2.5e-5)  # the reference's
    for step in cfg.train_dataloader.dataset.pipeline:  # 128 px: a quarter of the demo's pixels, the same code
        if step.type == "Resize":
            step.scale = (128, 128)
    # as the OADP configs (their bbox head's lr_mult): mmengine then names every frozen parameter it leaves out
    cfg.optim_wrapper.paramwise_cfg = dict(custom_keys={"roi_head.bbox_head": dict(lr_mult=0.5)})
    if stop_at is not None:
        cfg.train_cfg.max_iters = stop_at
    runner = Runner.from_cfg(cfg)
    quiet_mmengine(runner.logger)
    runner.train()
    state = runner.model.state_dict()
    weights = {k: v.detach().clone() for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()}
    return weights, sorted((tmp / name).glob("2*/2*.log"))[-1].read_text(), cfg


@pytest.mark.slow
def test_an_accumulated_step_equals_a_large_batch_step(accumulation_setup):
    """1 process x 2 images accumulated to 4 gives the weights of 1 x 4 after 3 SGD steps (warm-up and lr step
    included), within float32 summation order; 1 x 2 without accumulation (the old behaviour, lr halved) does not.

    Tolerance: the per-image losses and samples are the same (frozen BN statistics, one image size, fixed per-image
    sampling, a fixed number of samples per image so that every mean has the same normaliser), so the two runs
    differ only in how float32 sums are grouped (two backward passes of 2 images added, against one of 4), a few
    ulps (~1e-7) of each gradient, which 3 SGD steps carry into the weights; the bound is the largest weight
    difference over the largest weight change, 1e-4, and the old behaviour's difference must be 100x larger."""
    initial = _baseline_run(accumulation_setup, "init", per_gpu=4, reference=4, iters=1, stop_at=0)[0]
    big, _, big_cfg = _baseline_run(accumulation_setup, "big", per_gpu=4, reference=4)
    acc, log, acc_cfg = _baseline_run(accumulation_setup, "acc", per_gpu=2, reference=4)
    old = _baseline_run(accumulation_setup, "old", per_gpu=2, reference=4, mode="actual")[0]
    assert big_cfg.batch["accumulation"] == 1 and acc_cfg.batch["accumulation"] == 2
    assert acc_cfg.train_cfg.max_iters == 6 and big_cfg.train_cfg.max_iters == 3
    # the lr of each optimiser step is the large batch's (warm-up over 3 steps, x0.1 after step 2): the lr logged
    # at iteration 6 of the accumulated run is the one at step 3 of the large batch
    lr = re.compile(r"Iter\(train\) \[\s*(\d+)/\d+\].*?\blr: (\S+)")
    assert dict(lr.findall(log))["6"] == dict(lr.findall(_newest_run_log(Path(big_cfg.work_dir))))["3"]

    moved = max((big[k] - initial[k]).abs().max().item() for k in big)
    diff = max((acc[k] - big[k]).abs().max().item() for k in big)
    diff_old = max((old[k] - big[k]).abs().max().item() for k in big)
    print(f"largest weight change {moved:.3e}; accumulated vs large batch {diff:.3e}; old behaviour {diff_old:.3e}")
    assert moved > 1e-3
    assert diff <= ACCUMULATION_RTOL * moved
    assert diff_old >= 100 * diff
    # mmengine's notices a user cannot act on are filtered out of the training log (frozen parameters, FileClient,
    # the generic BatchNorm notice of accumulation: these BN layers are frozen)
    assert "requires_grad=False" not in log and "FileClient" not in log and "Gradient accumulative" not in log


@pytest.mark.slow
def test_a_resumed_accumulated_run_continues_exactly(accumulation_setup):
    """An accumulated run (2 x 2 images per step, 3 steps) stopped after 1 step and resumed from its checkpoint
    ends with exactly the weights of the run that was never stopped: the data order, the optimiser state, the
    schedulers in optimiser steps and the samplers' random state (RandomStateHook) continue."""
    run = dict(per_gpu=2, reference=4, iters=3, fixed_sampling=False)
    whole = _baseline_run(accumulation_setup, "whole", **run)[0]
    _baseline_run(accumulation_setup, "resumed", **run, stop_at=2)
    resumed, log, _ = _baseline_run(accumulation_setup, "resumed", **run)
    assert "resumed epoch: 0, iter: 2" in log
    assert whole.keys() == resumed.keys()
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k
