"""Stage proposals: safe pickle import, the proposals file, recall by hand, RPN training on base boxes only."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import proposals
from pipeline.core import dry_run as dry
from pipeline.formats import proposal_file
from pipeline.proposals import config as rpn_config
from pipeline.proposals import recall, schedule
from pipeline.proposals.reference import UnsafePickleError, load_proposal_pickle
from tests.conftest import make_demo_split, write_json
from tests.test_detector_train import _killed_in_second_iteration, _newest_run_log, _resumed, _stale


def test_proposal_file_round_trip(tmp_path):
    ids = [7, 3, 5]
    boxes = [np.array([[0, 0, 10, 10]]), np.zeros((0, 4)), np.array([[1, 2, 3, 4], [5, 6, 7, 8.0]])]
    scores = [np.array([0.9]), np.zeros(0), np.array([0.5, 0.4])]
    path = tmp_path / "p.h5"
    proposal_file.write(path, ids, boxes, scores, {"model": "x"})
    pf = proposal_file.ProposalFile(path)
    assert pf.image_ids.tolist() == [3, 5, 7] and pf.attrs["model"] == "x"
    b, s = pf.get(5)
    np.testing.assert_array_equal(b, boxes[2])
    np.testing.assert_allclose(s, scores[2])
    assert pf.get(3)[0].shape == (0, 4)
    with pytest.raises(ValueError, match="no proposals for image 9"):
        pf.get(9)


def test_safe_import_accepts_the_reference_format(tmp_path):
    arrays = [np.random.default_rng(i).uniform(0, 100, size=(i + 1, 5)).astype(np.float32) for i in range(3)]
    path = tmp_path / "oln.pkl"
    path.write_bytes(pickle.dumps(arrays))
    got = load_proposal_pickle(path)
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, arrays, strict=True))
    ann = write_json(
        tmp_path / "a.json",
        {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in (30, 10, 20)], "annotations": [], "categories": []},
    )
    out = tmp_path / "p.h5"
    proposals.main(["import", "--pickle", str(path), "--annotations", str(ann), "--output", str(out)])
    pf = proposal_file.ProposalFile(out)
    np.testing.assert_array_equal(pf.get(10)[0], arrays[0][:, :4])  # entry i -> i-th ascending image id
    np.testing.assert_array_equal(pf.get(30)[1], arrays[2][:, 4])


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", ["reduce", "nested", "object_array", "wrong_shape"])
def test_safe_import_refuses_anything_else(tmp_path, payload):
    marker = tmp_path / "pwned"
    if payload == "reduce":
        obj = _Evil(marker)
    elif payload == "nested":
        obj = [np.zeros((1, 5), np.float32), _Evil(marker)]
    elif payload == "object_array":
        obj = [np.array([[1, 2, 3, 4, 5]], dtype=object)]
    else:
        obj = [np.zeros((2, 4), np.float32)]
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(UnsafePickleError, match=r"bad\.pkl"):
        load_proposal_pickle(path)
    assert not marker.exists()  # nothing ran


def test_import_count_mismatch(tmp_path):
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps([np.zeros((1, 5), np.float32)]))
    ann = write_json(
        tmp_path / "a.json",
        {
            "images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}],
            "annotations": [],
            "categories": [],
        },
    )
    with pytest.raises(ValueError, match="1 entries for 2 images"):
        proposals.main(["import", "--pickle", str(path), "--annotations", str(ann), "--output", str(tmp_path / "o.h5")])


def test_recall_by_hand():
    # one base box (0,0,10,10) and one novel box (20,20,30,30)
    ann = {
        "annotations": [
            {"image_id": 1, "bbox": [0, 0, 10, 10], "category_id": 0},
            {"image_id": 1, "bbox": [20, 20, 10, 10], "category_id": 1},
            {"image_id": 1, "bbox": [50, 50, 5, 5], "category_id": 1, "iscrowd": 1},  # not counted
        ]
    }

    class P:
        def get(self, image_id):
            # proposal 0 is the base box (score 0.9); proposal 1 (area 50) lies inside the novel box
            # (area 100): IoU = 50 / 100 = 0.5 (score 0.8)
            return np.array([[0, 0, 10, 10], [25, 20, 30, 30.0]]), np.array([0.9, 0.8])

    report = recall.recall_report(ann, P(), num_base=1, ks=(1, 2))
    assert report["base"]["AR@1"] == 100.0 and report["base"]["boxes"] == 1
    assert report["novel"]["AR@1"] == 0.0  # top-1 is the base proposal, IoU 0 with the novel box
    # with 2 proposals the novel box has best IoU 0.5: recall 1 at t=0.5 only -> AR = 1/10
    assert report["novel"]["AR@2"] == pytest.approx(10.0)
    assert report["novel"]["R@2@0.5"] == 100.0
    assert report["all"]["AR@2"] == pytest.approx(55.0)


@pytest.mark.slow
def test_rpn_training_on_base_boxes_lowers_the_loss(tmp_path):
    demo = make_demo_split(tmp_path, num_train=6, num_val=3)
    work = tmp_path / "work"
    argv = [
        "train",
        "--annotations",
        str(tmp_path / "train.base.json"),
        "--images",
        str(demo / "images/train"),
        "--work-dir",
        str(work),
        "--depth",
        "18",
        "--backbone-init",
        "random",
        "--scale",
        "256",
        "--iters",
        "12",
        "--batch-size",
        "2",
        "--lr",
        "0.01",
        "--lr-batch",
        "2",
        "--steps",
        "--workers",
        "0",
        "--checkpoint-every",
        "6",
    ]
    proposals.main(argv)
    final = work / "final.pth"
    assert final.exists()
    logs = sorted(work.glob("*/vis_data/scalars.json"))
    losses = [json.loads(line)["loss"] for line in logs[-1].read_text().splitlines() if '"loss"' in line]
    assert len(losses) >= 10 and np.mean(losses[-3:]) < np.mean(losses[:3])
    # resume: the same run again continues from its last checkpoint (iteration 12), through weights_only loading
    proposals.main(argv)
    newest = sorted(work.glob("2*/2*.log"))[-1].read_text()
    assert "resumed epoch: 0, iter: 12" in newest
    # the trainer saw base boxes only: the base file has no novel annotation
    base = json.loads((tmp_path / "train.base.json").read_text())
    assert base["annotations"] and all(a["category_id"] < 3 for a in base["annotations"])
    out = tmp_path / "val.h5"
    proposals.main(
        [
            "predict",
            "--checkpoint",
            str(final),
            "--annotations",
            str(tmp_path / "val.all.json"),
            "--images",
            str(demo / "images/val"),
            "--output",
            str(out),
            "--max-per-img",
            "50",
            "--device",
            "cpu",
        ]
    )
    pf = proposal_file.ProposalFile(out)
    val_ids = sorted(im["id"] for im in json.loads((tmp_path / "val.all.json").read_text())["images"])
    assert pf.image_ids.tolist() == val_ids
    b, s = pf.get(val_ids[0])
    assert 0 < len(b) <= 50 and (np.diff(s) <= 0).all() and (b[:, 2] <= 256.5).all()
    rec = tmp_path / "recall.json"
    proposals.main(
        [
            "recall",
            "--proposals",
            str(out),
            "--annotations",
            str(tmp_path / "val.all.json"),
            "--num-base",
            "3",
            "--output",
            str(rec),
        ]
    )
    report = json.loads(rec.read_text())
    assert set(report) >= {"base", "novel", "all"} and "AR@100" in report["base"]


@pytest.mark.slow
def test_rpn_training_resumes_only_the_same_run(tmp_path, monkeypatch):
    """Through ``proposals train`` (2 iterations, a checkpoint each): a killed run resumes with the same inputs,
    also after the project folder moved; another lr, changed annotation contents, a detector checkpoint to start
    from and changed contents of that checkpoint start afresh, the old checkpoints set aside in ``stale/``."""
    project = tmp_path / "project"
    demo = make_demo_split(project, num_train=4, num_val=1)
    monkeypatch.chdir(project)
    work = Path("work")

    def train(lr: str = "0.01", *extra: str) -> None:
        proposals.main(
            ["train", "--annotations", "train.base.json", "--images", str(demo.relative_to(project) / "images/train"),
             "--work-dir", str(work), "--depth", "18", "--scale", "128", "--iters", "2", "--lr", lr, "--lr-batch", "2",
             "--workers", "0", "--checkpoint-every", "1", "--backbone-init", "random", *extra]
        )  # fmt: skip

    train()
    _killed_in_second_iteration(work)
    train()  # the same run
    assert _resumed(work) and not _stale(work)

    _killed_in_second_iteration(work)
    moved = tmp_path / "moved"
    project.rename(moved)
    monkeypatch.chdir(moved)
    train()
    assert _resumed(work) and not _stale(work)

    _killed_in_second_iteration(work)
    train("0.5")  # another option
    assert not _resumed(work) and _stale(work) == ["iter_1.pth", "last_checkpoint"]

    _killed_in_second_iteration(work)
    base = json.loads(Path("train.base.json").read_text())
    base["annotations"] = base["annotations"][:-1]
    Path("train.base.json").write_text(json.dumps(base))  # same path, other contents
    train("0.5")
    assert not _resumed(work) and len(_stale(work)) == 4

    shutil.copy(work / "iter_2.pth", "soco.pth")
    _killed_in_second_iteration(work)
    train("0.5", "--backbone-init", "detector:soco.pth")
    assert not _resumed(work) and "soco.pth" in _newest_run_log(work) and len(_stale(work)) == 6
    _killed_in_second_iteration(work)
    train("0.5", "--backbone-init", "detector:soco.pth")  # the same run: its checkpoint, not the initial weights
    assert _resumed(work) and len(_stale(work)) == 6
    shutil.copy(work / "iter_1.pth", "soco.pth")  # other initial weights under the same name
    _killed_in_second_iteration(work)
    train("0.5", "--backbone-init", "detector:soco.pth")
    assert not _resumed(work) and len(_stale(work)) == 8


def train_args(annotations: Path, images: Path, work_dir: Path, *extra: str):
    """The train subcommand's arguments as its own parser builds them."""
    argv = ["train", "--annotations", str(annotations), "--images", str(images), "--work-dir", str(work_dir), *extra]
    return proposals.build_parser().parse_args(argv)


def test_backbone_initialisation_options(tmp_path):
    ann = write_json(tmp_path / "a.json", {"images": [], "annotations": [], "categories": [{"id": 0, "name": "x"}]})

    def cfg(init):
        ns = train_args(ann, tmp_path, tmp_path / "w", "--backbone-init", init, "--iters", "10")
        return rpn_config.train_config(ns)

    assert cfg("random")["model"]["backbone"]["init_cfg"] is None and cfg("random")["load_from"] is None
    tv = cfg("torchvision:/w/resnet50-0676ba61.pth")
    assert tv["model"]["backbone"]["init_cfg"] == {"type": "Pretrained", "checkpoint": "/w/resnet50-0676ba61.pth"}
    assert cfg("detector:/w/soco.pth")["load_from"] == "/w/soco.pth"
    with pytest.raises(ValueError, match="backbone init 'imagenet'"):
        cfg("imagenet")


def test_centerness_by_hand():
    import torch

    from pipeline.proposals.heads import centerness

    boxes = torch.tensor([[0.0, 0, 10, 20]] * 4)
    points = torch.tensor([[5.0, 10], [2.5, 10], [2.5, 5], [12, 10]])
    # centre: 1; x at 1/4: sqrt(2.5/7.5); both at 1/4: sqrt(1/3 * 5/15); outside: 0
    expected = torch.tensor([1.0, (1 / 3) ** 0.5, (1 / 9) ** 0.5, 0.0])
    torch.testing.assert_close(centerness(points, boxes), expected)


@pytest.mark.slow
def test_oln_style_head_trains_and_predicts(tmp_path):
    demo = make_demo_split(tmp_path, num_train=4, num_val=2)
    work = tmp_path / "work"
    proposals.main(
        [
            "train",
            "--annotations",
            str(tmp_path / "train.base.json"),
            "--images",
            str(demo / "images/train"),
            "--work-dir",
            str(work),
            "--arch",
            "oln",
            "--depth",
            "18",
            "--backbone-init",
            "random",
            "--scale",
            "256",
            "--iters",
            "6",
            "--lr",
            "0.01",
            "--lr-batch",
            "2",  # the demo's: 2 images per optimiser step, nothing accumulated
            "--workers",
            "0",
        ]
    )
    logs = sorted(work.glob("*/vis_data/scalars.json"))[-1].read_text().splitlines()
    losses = [json.loads(line)["loss_rpn_cls"] for line in logs if "loss_rpn_cls" in line]
    assert len(losses) == 6 and all(np.isfinite(losses)) and 0 <= min(losses) <= max(losses) < 1.0  # an L1 on [0, 1]
    out = tmp_path / "val.h5"
    proposals.main(
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
            "--max-per-img",
            "30",
        ]
    )
    pf = proposal_file.ProposalFile(out)
    assert pf.attrs["model"] == "oln_r18_fpn" and len(pf.get(int(pf.image_ids[0]))[0]) > 0


def test_multi_gpu_training_relaunches_under_torchrun(tmp_path):
    import sys

    import torch

    from pipeline.core import cli

    cmd = cli.torchrun_command("pipeline.proposals", 4, ["--log", "x.log", "train", "--gpus", "4", "--iters", "10"])
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert cmd[5:] == ["-m", "pipeline.proposals", "--log", "x.log", "train", "--gpus", "4", "--iters", "10"]
    if torch.cuda.device_count() < 2:
        with pytest.raises(ValueError, match="--gpus 2: only"):
            proposals.main(
                ["train", "--annotations", "a.json", "--images", ".", "--work-dir", str(tmp_path), "--gpus", "2"]
            )


def test_the_training_dataset_holds_base_boxes_only(tmp_path):
    """Build the dataset exactly as the trainer does and look at every instance it yields."""
    from mmdet.registry import DATASETS

    from pipeline.models.detector import register_modules

    demo = make_demo_split(tmp_path, num_train=8, num_val=1)
    ns = train_args(tmp_path / "train.base.json", demo / "images/train", tmp_path, "--depth", "18", "--scale", "256")
    register_modules()  # mmdet's and the project's transforms (ReadImage)
    dataset = DATASETS.build(rpn_config.train_config(ns)["train_dataloader"]["dataset"])
    labels = [inst["bbox_label"] for i in range(len(dataset)) for inst in dataset.get_data_info(i)["instances"]]
    raw = json.loads((demo / "annotations/instances_train.json").read_text())
    novel_boxes = sum(a["category_id"] == 4 for a in raw["annotations"])  # "red star" in the generated file
    assert novel_boxes > 0 and labels and set(labels) <= {0, 1, 2}


def _untrained_rpn(path: Path) -> Path:
    """An untrained R18 RPN saved as ``proposals train`` saves ``final.pth`` (scale 128: quick on a CPU)."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(rpn_config.rpn_model(18, "random"))
    meta = {"depth": 18, "scale": 128, "arch": "rpn", "annotations_sha256": "0" * 64}
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    return path


def test_predict_refuses_or_skips_an_unreadable_image(tmp_path, capsys):
    """``--on-bad-image error`` stops with one line naming the file and id (traceback in the log); ``skip`` gives
    the image no proposals, lists it in the ``skipped`` attr, and OAKE objects then skip it too."""
    from pipeline.core import cli
    from pipeline.formats import feature_cache as cache
    from pipeline.oake import objects
    from tests.conftest import tiny_clip_args

    demo = make_demo_split(tmp_path, num_train=1, num_val=3)
    ann = tmp_path / "val.all.json"
    ids = sorted(im["id"] for im in json.loads(ann.read_text())["images"])
    bad = demo / "images/val" / f"{ids[1]:012d}.jpg"
    bad.write_bytes(b"not a jpeg")
    ckpt = _untrained_rpn(tmp_path / "final.pth")
    out, log = tmp_path / "val.h5", tmp_path / "predict.log"
    argv = ["--log", str(log), "predict", "--checkpoint", str(ckpt), "--annotations", str(ann), "--images",
            str(demo / "images/val"), "--output", str(out), "--max-per-img", "20", "--device", "cpu"]  # fmt: skip
    assert cli.run_main(proposals.main, argv) == 2
    err = capsys.readouterr().err
    line = f"{bad}: unreadable image, id {ids[1]}"
    assert f"ERROR pipeline: {line}" in err and not out.exists()
    assert "Traceback" not in err[err.index(f"ERROR pipeline: {line}") :]  # one line (mmengine may log before it)
    assert line in log.read_text() and "Traceback" in log.read_text()
    assert cli.run_main(proposals.main, [*argv, "--on-bad-image", "skip"]) == 0
    assert "proposals: 3/3 img (100%)" in log.read_text()  # the progress lines reach the log file
    pf = proposal_file.ProposalFile(out)
    assert pf.image_ids.tolist() == ids
    assert len(pf.get(ids[1])[0]) == 0 and len(pf.get(ids[0])[0]) > 0
    skipped = json.loads(pf.attrs["skipped"])
    assert [s["image_id"] for s in skipped] == [ids[1]] and line in skipped[0]["reason"]
    shard = tmp_path / "o.h5"
    objects.main([*tiny_clip_args(demo / "annotations/instances_val.json", demo / "images/val"),
                  "--output", str(shard), "--proposals", str(out), "--on-bad-image", "skip", "--dry-run"])  # fmt: skip
    reader = cache.ShardReader(shard)
    assert list(reader.skipped) == [ids[1]] and ids[0] in reader and ids[2] in reader


def test_recall_without_boxes_of_a_group_is_null_not_nan(tmp_path):
    """A split without novel boxes: recall is undefined (None), the JSON is valid and the report shows '–'."""
    from pipeline import report
    from pipeline.core import atomic

    ann = {"annotations": [{"image_id": 1, "bbox": [0, 0, 10, 10], "category_id": 0}]}

    class P:
        def get(self, image_id):
            return np.array([[0, 0, 10, 10.0]]), np.array([0.9])

    rec = recall.recall_report(ann, P(), num_base=1, ks=(100,))
    assert rec["novel"] == {"AR@100": None, "R@100@0.5": None, "boxes": 0} and rec["base"]["AR@100"] == 100.0
    atomic.write_json(tmp_path / "recall.json", rec, compact=False)
    assert json.loads((tmp_path / "recall.json").read_text())["novel"]["AR@100"] is None
    text = report.summary_markdown([], {}, rec, None, None, [])
    assert "novel AR@100 – (R@100 IoU 0.5: –, 0 boxes)" in text and "base AR@100 100.0" in text


def test_dry_run_predict_and_recall_cover_the_dry_run_set(tmp_path, monkeypatch):
    """Under --dry-run, predict reads the first images of the file (file order, not ids) and recall scores the
    ground truth of those images only (the full recall refuses the file: images without proposals)."""
    from pipeline.core import dry_run as dry

    monkeypatch.setattr(dry, "IMAGES", 2)
    demo = make_demo_split(tmp_path, num_train=1, num_val=4)
    ann = tmp_path / "val.all.json"
    data = json.loads(ann.read_text())
    data["images"].reverse()
    ann.write_text(json.dumps(data))
    first = [im["id"] for im in data["images"][:2]]
    out = tmp_path / "val.h5"
    proposals.main(
        ["predict", "--checkpoint", str(_untrained_rpn(tmp_path / "final.pth")), "--annotations", str(ann)]
        + ["--images", str(demo / "images/val"), "--output", str(out), "--max-per-img", "20", "--device", "cpu"]
        + ["--dry-run"]
    )
    pf = proposal_file.ProposalFile(out)
    assert pf.image_ids.tolist() == sorted(first) and bool(pf.attrs["dry_run"])
    rec = tmp_path / "recall.json"
    args = ["recall", "--proposals", str(out), "--annotations", str(ann), "--num-base", "3", "--output", str(rec)]
    with pytest.raises(proposal_file.ProposalFileError, match="no proposals for image"):
        proposals.main(args)
    proposals.main([*args, "--dry-run"])
    report = json.loads(rec.read_text())
    boxes = sum(a["image_id"] in first and not a.get("iscrowd") for a in data["annotations"])
    assert report["dry_run"] is True and report["all"]["boxes"] == boxes > 0


def test_training_images_counts_what_mmdet_trains_on():
    """mmdet's filter (filter_empty_gt, min_size 32): an image needs a box (a crowd box counts) and both sides >= 32."""
    data = {
        "images": [
            {"id": 1, "width": 640, "height": 480},
            {"id": 2, "width": 640, "height": 480},  # no box
            {"id": 3, "width": 31, "height": 480},  # too narrow
            {"id": 4, "width": 32, "height": 32},  # only a crowd box
        ],
        "annotations": [{"image_id": 1}, {"image_id": 1}, {"image_id": 3}, {"image_id": 4, "iscrowd": 1}],
    }
    assert schedule.training_images(data) == 2


def test_rpn_1x_schedule_by_hand():
    # OV-COCO: 107,761 training images with base boxes, 12 epochs at 16 images: ceil(80,820.75) optimiser steps,
    # lr steps after epochs 8 and 11 = round(53,880.67) and round(74,085.92); lr 0.02 as given for 16 images
    s = schedule.schedule(
        images=107_761, epochs=12, iters=None, steps=[8, 11], lr=0.02, lr_batch=16, gpus=8, batch_size=2
    )
    assert (s.iters, s.milestones, s.lr, s.batch.accumulation) == (80_821, (53_881, 74_086), 0.02, 1)
    # one GPU x 2 images, reference batch: the same steps of 16 images, 8 iterations accumulated per step
    s = schedule.schedule(images=1000, epochs=12, iters=None, steps=[8, 11], lr=0.02, lr_batch=16, gpus=1, batch_size=2)
    assert (s.iters, s.milestones, s.lr, s.batch.accumulation) == (750, (500, 688), 0.02, 8)
    # actual batch (the old behaviour): 8x the steps of 2 images, lr / 8
    s = schedule.schedule(
        images=1000, epochs=12, iters=None, steps=[8, 11], lr=0.02, lr_batch=16, gpus=1, batch_size=2, mode="actual"
    )
    assert (s.iters, s.milestones, s.lr, s.batch.accumulation) == (6000, (4000, 5500), 0.0025, 1)
    # fixed steps keep the lr steps' fractions 8/12 and 11/12
    s = schedule.schedule(images=1000, epochs=12, iters=200, steps=[8, 11], lr=0.01, lr_batch=2, gpus=1, batch_size=2)
    assert (s.iters, s.milestones, s.lr) == (200, (133, 183), 0.01)
    assert s.param_scheduler() == [
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=200),
        dict(type="MultiStepLR", by_epoch=False, begin=0, end=200, milestones=[133, 183], gamma=0.1),
    ]
    with pytest.raises(ValueError, match=r"lr steps \[8, 13\]"):
        schedule.schedule(images=10, epochs=12, iters=None, steps=[8, 13], lr=0.02, lr_batch=16, gpus=1, batch_size=2)
    with pytest.raises(ValueError, match=r"'proposals.gpus' x 'proposals.batch_size' = 3 x 2 = 6 images"):
        schedule.schedule(images=10, epochs=12, iters=None, steps=[8], lr=0.02, lr_batch=16, gpus=3, batch_size=2)


def test_train_config_schedule(tmp_path):
    from pipeline.models.training import schedule_line

    ann = write_json(
        tmp_path / "a.json",
        {
            "images": [{"id": i, "width": 64, "height": 48} for i in range(1, 11)],
            "annotations": [{"id": i, "image_id": i, "category_id": 0, "bbox": [1, 1, 9, 9]} for i in range(1, 10)],
            "categories": [{"id": 0, "name": "x"}],
        },
    )

    def cfg(*extra):
        return rpn_config.train_config(train_args(ann, tmp_path, tmp_path / "w", "--backbone-init", "random", *extra))

    # 9 images with a box, 12 epochs at 16 images per step: ceil(6.75) = 7 steps, lr steps after round(4.67) = 5 and
    # round(6.42) = 6; 2 GPUs x 2 images accumulate 4 iterations per step: 28 iterations; lr 0.02 as given
    c = cfg("--gpus", "2")
    assert c["train_cfg"]["max_iters"] == 28 and c["optim_wrapper"]["optimizer"]["lr"] == 0.02
    assert c["optim_wrapper"]["accumulative_counts"] == 4 and c["param_scheduler"][1]["milestones"] == [5, 6]
    assert c["default_hooks"]["param_scheduler"] == dict(type="AccumulatedParamSchedulerHook", accumulation=4)
    assert c["default_hooks"]["checkpoint"]["interval"] == 4 * 200  # --checkpoint-every counts optimiser steps
    assert c["batch"] == dict(gpus=2, per_gpu=2, accumulation=4, reference=16, mode="reference", effective=16)
    assert schedule_line(c) == (
        "2 GPUs x 2 images x 4 accumulated = 16 images per optimiser step (reference 16), 7 optimiser steps = 28 "
        "data iterations, lr 0.02, linear warm-up over 7 steps, lr x0.1 after steps [5, 6]"
    )
    # actual (the old behaviour): 12 epochs at 2 GPUs x 2 images: ceil(27) = 27 iterations, steps after 18 and
    # 24.75 -> 25; lr 0.02 for 16 images -> 0.005 for 4
    c = cfg("--gpus", "2", "--effective-batch", "actual")
    assert c["train_cfg"]["max_iters"] == 27 and c["optim_wrapper"]["optimizer"]["lr"] == pytest.approx(0.005)
    assert c["param_scheduler"][1]["milestones"] == [18, 25] and "accumulative_counts" not in c["optim_wrapper"]
    # the demo's settings: 200 iterations, no steps, lr 0.01 for its 2 images: the warm-up alone, lr unscaled
    c = cfg("--iters", "200", "--steps", "--lr", "0.01", "--lr-batch", "2")
    assert c["optim_wrapper"]["optimizer"]["lr"] == 0.01 and c["train_cfg"]["max_iters"] == 200
    assert c["param_scheduler"] == [dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=200)]
    assert schedule_line(c).endswith(
        "200 iterations, lr 0.01, linear warm-up over 200 steps, no lr decay step (constant lr after the warm-up)"
    )
    # a dry run: its few iterations whatever the accumulation, the steps at the same fractions
    c = cfg("--dry-run")
    assert c["train_cfg"]["max_iters"] == dry.ITERS and c["optim_wrapper"]["accumulative_counts"] == 8
    assert c["param_scheduler"][1]["milestones"] == sorted({round(8 * dry.ITERS / 12), round(11 * dry.ITERS / 12)})
    with pytest.raises(ValueError, match=r"a.json: config keys 'proposals.gpus' x 'proposals.batch_size' = 1 x 5"):
        cfg("--batch-size", "5")
    empty = write_json(tmp_path / "e.json", {"images": [], "annotations": [], "categories": [{"id": 0, "name": "x"}]})
    with pytest.raises(ValueError, match="e.json: no training image"):
        rpn_config.train_config(train_args(empty, tmp_path, tmp_path / "w"))


def test_a_missing_backbone_file_is_named(tmp_path):
    ann = write_json(tmp_path / "a.json", {"images": [], "annotations": [], "categories": [{"id": 0, "name": "x"}]})
    missing = tmp_path / "pretrained/torchvision/resnet50-0676ba61.pth"
    argv = ["train", "--annotations", str(ann), "--images", str(tmp_path), "--work-dir", str(tmp_path / "w")]
    with pytest.raises(ValueError, match=f"--backbone-init torchvision:{missing}: no file"):
        proposals.main([*argv, "--backbone-init", f"torchvision:{missing}"])
