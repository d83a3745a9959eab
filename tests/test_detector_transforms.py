"""LoadCLIPFeatures: after resize + flip, the loaded block and object boxes land where the image content went."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeline import demo_data
from pipeline.formats import feature_cache as cache
from pipeline.models.clip import geometry
from tests.conftest import extract_caches, gt_proposals

SOLID = ("red circle", "blue square", "green star", "yellow hexagon")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf")
    demo_data.run(
        demo_data.DemoOptions(
            out_dir=root / "demo", classes=SOLID, num_train=1, num_val=2, sizes=((320, 240),), crowd_prob=0.0
        )
    )
    ann = root / "demo/annotations/instances_val.json"
    data = json.loads(ann.read_text())
    ids = sorted(im["id"] for im in data["images"])
    gt = {i: [a for a in data["annotations"] if a["image_id"] == i] for i in ids}
    xyxy = gt_proposals(ann, root / "p.h5")
    extract_caches(ann, root / "demo/images/val", root, proposals=root / "p.h5")
    return root, data, gt, xyxy


def run_pipeline(root, data, gt, image_id, flip: bool):
    from mmcv.transforms import Compose
    from mmdet.utils import register_all_modules

    import pipeline.models.detector.transforms  # noqa: F401  (registers LoadCLIPFeatures)

    register_all_modules()
    im = next(i for i in data["images"] if i["id"] == image_id)
    results = {
        "img_path": str(root / "demo/images/val" / im["file_name"]),
        "img_id": image_id,
        "instances": [
            {
                "bbox": [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]],
                "bbox_label": a["category_id"] - 1,
                "ignore_flag": 0,
            }
            for a in gt[image_id]
        ],
    }
    steps = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", scale=(480, 360), keep_ratio=True),  # 320x240 -> 480x360: scale 1.5
        dict(type="RandomFlip", prob=1.0 if flip else 0.0),
        dict(
            type="LoadCLIPFeatures",
            globals_shards=[str(root / "g.h5")],
            blocks_shards=[str(root / "b.h5")],
            objects_shards=[str(root / "o.h5")],
            num_classes=len(SOLID),
        ),
    ]
    return Compose(steps)(results)


@pytest.mark.parametrize("flip", [False, True])
def test_boxes_follow_resize_and_flip(world, flip):
    root, data, gt, xyxy = world
    image_id = int(cache.ShardReader(root / "o.h5").image_ids[0])
    out = run_pipeline(root, data, gt, image_id, flip)
    assert out["img"].shape[:2] == (360, 480)
    # objects were the ground-truth boxes: they must coincide with mmdet's own transformed gt_bboxes
    gt_t = out["gt_bboxes"].tensor.numpy()
    np.testing.assert_allclose(out["object_bboxes"].numpy(), gt_t, atol=1e-3)
    # by hand: x' = 1.5 x (and 480 - x' when flipped)
    b = xyxy[image_id][0] * 1.5
    expected = np.array([480 - b[2], b[1], 480 - b[0], b[3]]) if flip else b
    np.testing.assert_allclose(out["object_bboxes"][0].numpy(), expected, atol=1e-3)
    # block 0 (the centre square 40..280 x 0..240) the same way
    c = np.array(geometry.block0_box(320, 240)) * 1.5
    expected0 = np.array([480 - c[2], c[1], 480 - c[0], c[3]]) if flip else c
    np.testing.assert_allclose(out["block_bboxes"][0].numpy(), expected0, atol=1e-3)
    # the pixels: the centre of every mapped object box shows its class colour in the transformed image
    img = out["img"][..., ::-1].astype(float)  # BGR -> RGB
    for box, ann in zip(out["object_bboxes"].numpy(), gt[image_id], strict=True):
        if ann is not gt[image_id][-1]:
            continue  # earlier shapes may be occluded at their centre; the last one drawn is not
        cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
        colour = np.array(demo_data.COLOURS[SOLID[ann["category_id"] - 1].split()[0]], float)
        assert np.abs(img[cy, cx] / img[cy, cx].sum() - colour / colour.sum()).max() < 0.1


def test_features_are_not_flipped_and_labels_are_any_overlap(world):
    root, data, gt, _ = world
    image_id = int(cache.ShardReader(root / "o.h5").image_ids[0])
    a, b = run_pipeline(root, data, gt, image_id, False), run_pipeline(root, data, gt, image_id, True)
    for key in ("clip_global", "clip_blocks", "clip_objects"):
        torch.testing.assert_close(a[key], b[key])
    stored = cache.ShardReader(root / "b.h5").get(image_id)["embeddings"]
    np.testing.assert_array_equal(a["clip_blocks"].numpy(), stored)
    # block 0 covers the centre square: it is labelled with every class whose box reaches into it
    present = {
        ann["category_id"] - 1 for ann in gt[image_id] if ann["bbox"][0] + ann["bbox"][2] > 40 and ann["bbox"][0] < 280
    }
    assert set(torch.nonzero(a["block_labels"][0]).flatten().tolist()) == present
    torch.testing.assert_close(a["block_labels"], b["block_labels"])  # overlap is flip-invariant


def test_max_objects_keeps_the_highest_objectness_in_stored_order():
    from pipeline.models.detector.transforms import LoadCLIPFeatures

    rec = {
        "boxes": np.array([[0, 0, 10, 10], [5, 5, 30, 30], [1, 1, 3, 3], [2, 2, 40, 20], [0, 0, 8, 9]], np.float32),
        "objectness": np.array([0.1, 0.9, 0.99, 0.5, 0.7], np.float16),  # box 2 is too small (2 px)
        "embeddings": np.arange(10, dtype=np.float16).reshape(5, 2),
    }

    class Shards:
        def get(self, image_id):
            assert image_id == 7
            return rec

    def load(**kw):
        t = LoadCLIPFeatures(objects_shards=["unused.h5"], **kw)
        t._shards = {"objects": Shards()}
        return t.transform({"img_id": 7})

    out = load(max_objects=2)  # valid: 0, 1, 3, 4; highest objectness 0.9 (1) and 0.7 (4)
    np.testing.assert_array_equal(out["object_bboxes"].numpy(), rec["boxes"][[1, 4]])
    np.testing.assert_array_equal(out["clip_objects"].numpy(), rec["embeddings"][[1, 4]])
    assert len(load()["object_bboxes"]) == 4  # None: every valid object, as the reference
    assert len(load(max_objects=10)["object_bboxes"]) == 4
    with pytest.raises(ValueError, match="max_objects must be >= 1"):
        LoadCLIPFeatures(objects_shards=["x.h5"], max_objects=0)
