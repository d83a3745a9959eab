"""The dry run's image set (pipeline.core.dry_run): the first images of a split's file, the same in every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.core import dry_run as dry
from pipeline.core.images import ImageItem
from tests.conftest import TINY, gt_proposals, make_demo_split, tiny_clip_args, write_json


def test_the_set_is_the_first_records_in_file_order(tmp_path):
    ids = [50, 3, 41, 7, 12, 99, 1, 8, 23, 4]
    data = {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in ids],
        "annotations": [{"id": k, "image_id": i} for k, i in enumerate(ids)],
        "categories": [{"id": 0, "name": "x"}],
    }
    path = write_json(tmp_path / "a.json", data)
    assert dry.IMAGES == 8 and dry.image_ids(path) == [50, 3, 41, 7, 12, 99, 1, 8]
    items = [ImageItem(i, Path(f"{i}.jpg")) for i in sorted(ids)]
    assert [it.image_id for it in dry.select(items, path)] == [1, 3, 7, 8, 12, 41, 50, 99]  # order of items kept
    small = dry.restrict(data)
    assert [im["id"] for im in small["images"]] == [50, 3, 41, 7, 12, 99, 1, 8]
    assert sorted(a["image_id"] for a in small["annotations"]) == [1, 3, 7, 8, 12, 41, 50, 99]
    assert small["categories"] == data["categories"] and len(data["images"]) == 10  # the input is not changed
    with pytest.raises(ValueError, match=r"b\.json: no 'images' key"):
        dry.image_ids(write_json(tmp_path / "b.json", {"annotations": []}))


def _reverse_images(*paths: Path) -> None:
    """List the images of each file in descending id order (the file order of real files is not the id order)."""
    for path in paths:
        data = json.loads(path.read_text())
        data["images"].sort(key=lambda im: -im["id"])
        path.write_text(json.dumps(data))


def test_restricted_dataset_keeps_the_set_after_mmdets_filter(tmp_path):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    from pipeline.models.detector.datasets import restrict_images

    register_all_modules()
    demo = make_demo_split(tmp_path, num_train=5, num_val=1)
    base = tmp_path / "train.base.json"
    _reverse_images(base)
    data = json.loads(base.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != data["images"][1]["id"]]
    base.write_text(json.dumps(data))  # the second image has no base box: mmdet's filter drops it
    cfg = dict(
        type="CocoDataset",
        ann_file=str(base),
        data_prefix=dict(img=str(demo / "images/train") + "/"),
        metainfo=dict(classes=("red circle", "blue square", "green star", "red star")),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=[],
    )
    keep = [data["images"][k]["id"] for k in (0, 1, 3)]
    restrict_images(cfg, keep)
    assert cfg["type"] == "ImageSubsetCocoDataset"
    dataset = DATASETS.build(cfg)
    with_boxes = {a["image_id"] for a in data["annotations"]}  # the base file holds base boxes only
    expected = [i for i in keep if i in with_boxes]
    assert keep[0] in expected and keep[1] not in expected
    assert [dataset.get_data_info(k)["img_id"] for k in range(len(dataset))] == expected  # file order
    with pytest.raises(ValueError, match=r"train\.base\.json: none of the images"):
        DATASETS.build({**cfg, "image_ids": [keep[1]]})
    with pytest.raises(ValueError, match="cannot be restricted"):
        restrict_images({"type": "ConcatDataset"}, keep)


@pytest.mark.slow
def test_training_dry_run_reads_what_two_dry_run_shards_hold(tmp_path):
    """The old dry run extracted the first 4 images of each shard (by id) and trained on the first 8 images of the
    file: with 2 shards, training asked a shard for an image it did not hold (KeyError "image ... is in none of the
    shards"). Now both read the dry-run set."""
    from pipeline import prompts, train
    from pipeline.formats import feature_cache as cache
    from pipeline.oake import objects

    demo = make_demo_split(tmp_path, num_train=12, num_val=1)
    ann = demo / "annotations/instances_train.json"
    _reverse_images(ann, tmp_path / "train.base.json", tmp_path / "train.all.json")
    gt_proposals(ann, tmp_path / "p.h5")
    shards = [tmp_path / f"shard-{i:03d}.h5" for i in range(2)]
    for i, shard in enumerate(shards):
        args = ["--output", str(shard), "--proposals", str(tmp_path / "p.h5"), "--shards", "2", "--shard", str(i)]
        objects.main([*tiny_clip_args(ann, demo / "images/train"), *args, "--dry-run"])
    held = sorted(int(i) for s in shards for i in cache.ShardReader(s).image_ids)
    all_ids = sorted(im["id"] for im in json.loads(ann.read_text())["images"])
    assert held == all_ids[-8:] == sorted(dry.image_ids(ann))  # the first 8 records: the 8 largest ids
    assert all(len(cache.ShardReader(s)) == 4 for s in shards)
    vild = tmp_path / "vild.pth"
    prompts.main(["vild", "--names-from", str(tmp_path / "train.all.json"), "--model", TINY, "--weights", "random"]
                 + ["--device", "cpu", "--output", str(vild), "--dry-run"])  # fmt: skip
    work = tmp_path / "work"
    train.main(
        ["fit", "--experiment", "vild_demo", "--names-from", str(tmp_path / "train.all.json"), "--num-base", "3"]
        + ["--annotations", str(tmp_path / "train.base.json"), "--images", str(demo / "images/train")]
        + ["--prompt", f"vild={vild}", "--objects", *map(str, shards), "--work-dir", str(work), "--workers", "0"]
        + ["--dry-run", "--cfg-options", "model.train_cfg.rpn_proposal.max_per_img=50"]
        + ["model.train_cfg.rcnn.sampler.num=32"]
    )
    import torch

    meta = torch.load(work / "final.pth", map_location="cpu", weights_only=True)["meta"]
    dataset = meta["config"]["train_dataloader"]["dataset"]
    assert dataset["type"] == "ImageSubsetCocoDataset" and sorted(dataset["image_ids"]) == held
    assert meta["config"]["train_cfg"]["max_iters"] == dry.ITERS
