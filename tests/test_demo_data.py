"""The generated demo dataset: real JPEGs, deterministic, COCO and LVIS formats that pass validation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import annotations, demo_data

CLASSES = (
    "red circle", "green square", "blue triangle", "yellow star", "purple cross", "orange diamond",
    "cyan hexagon", "white arrow", "red striped square", "green dotted triangle", "cyan checkered circle",
    "yellow striped diamond", "blue circle", "red star",
)  # fmt: skip
NOVEL = ("blue circle", "red star")


def generate(out: Path, **kw) -> demo_data.DemoOptions:
    opts = demo_data.DemoOptions(
        out_dir=out,
        classes=CLASSES,
        novel=NOVEL,
        num_train=kw.pop("num_train", 12),
        num_val=kw.pop("num_val", 5),
        crowd_prob=kw.pop("crowd_prob", 0.5),
        **kw,
    )
    demo_data.run(opts)
    return opts


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    generate(out)
    return out


def read(demo: Path, name: str) -> dict:
    return json.loads((demo / "annotations" / name).read_text())


def test_files_validate_and_images_are_real_jpegs(demo):
    for split in ("train", "val"):
        coco, lvis = read(demo, f"instances_{split}.json"), read(demo, f"lvis_{split}.json")
        annotations.validate(coco, split)
        annotations.validate(lvis, split, lvis=True)
        assert [c["name"] for c in coco["categories"]] == list(CLASSES)
        assert len(coco["categories"]) >= 12
        for im in coco["images"]:
            with Image.open(demo / "images" / split / im["file_name"]) as img:
                assert img.format == "JPEG" and img.size == (im["width"], im["height"])
        assert {im["id"] for im in coco["images"]} == {im["id"] for im in lvis["images"]}
    train_ids = {im["id"] for im in read(demo, "instances_train.json")["images"]}
    val_ids = {im["id"] for im in read(demo, "instances_val.json")["images"]}
    assert not train_ids & val_ids


def test_scenes_are_varied(demo):
    coco = read(demo, "instances_train.json")
    per_image = np.bincount([a["image_id"] for a in coco["annotations"] if not a["iscrowd"]])
    assert per_image[per_image > 0].max() >= 4
    sides = [max(a["bbox"][2:]) for a in coco["annotations"] if not a["iscrowd"]]
    assert max(sides) > 2.5 * min(sides)  # varied sizes
    assert any(a["iscrowd"] for a in coco["annotations"])
    assert len({a["category_id"] for a in coco["annotations"]}) >= 10
    crowd = next(a for a in coco["annotations"] if a["iscrowd"])
    assert set(crowd["segmentation"]) == {"counts", "size"}
    assert sum(crowd["segmentation"]["counts"][1::2]) == crowd["area"]  # RLE foreground == area
    poly = next(a for a in coco["annotations"] if not a["iscrowd"])
    xs, ys = poly["segmentation"][0][0::2], poly["segmentation"][0][1::2]
    x, y, w, h = poly["bbox"]
    assert min(xs) >= x - 0.01 and max(xs) <= x + w + 0.01 and min(ys) >= y - 0.01 and max(ys) <= y + h + 0.01


def test_objects_are_drawn_where_annotated(tmp_path):
    """Pixels inside a non-occluded polygon carry the class colour (or its dark texture shade)."""
    opts = demo_data.DemoOptions(out_dir=tmp_path, classes=("red circle", "blue square"), crowd_prob=0.0)
    img, objects = demo_data.draw_image(opts, "train", 3)
    last = objects[-1]  # drawn last: nothing occludes it
    coords = np.array(last.segmentation[0]).reshape(-1, 2)
    mask = demo_data.polygon_mask(coords, img.shape[1], img.shape[0])
    colour = np.array(demo_data.COLOURS[opts.specs[last.category].colour])
    mean = img[mask].reshape(-1, 3).mean(0)
    assert np.abs(mean - colour * mean.sum() / colour.sum()).max() < 40  # hue matches the class colour


def test_lvis_view(demo):
    lvis = read(demo, "lvis_train.json")
    freq = {c["name"]: c["frequency"] for c in lvis["categories"]}
    assert {n for n, f in freq.items() if f == "r"} == set(NOVEL)
    assert {"c", "f"} <= set(freq.values())
    assert all(im["coco_url"].endswith(f"/train/{im['id']:012d}.jpg") for im in lvis["images"])
    coco = read(demo, "instances_train.json")
    assert len(lvis["annotations"]) == sum(not a["iscrowd"] for a in coco["annotations"])
    assert all("iscrowd" not in a for a in lvis["annotations"])
    present: dict[int, set[int]] = {}
    for a in lvis["annotations"]:
        present.setdefault(a["image_id"], set()).add(a["category_id"])
    for im in lvis["images"]:
        assert not set(im["neg_category_ids"]) & present.get(im["id"], set())
        assert set(im["not_exhaustive_category_ids"]) <= present.get(im["id"], set())


def test_deterministic(tmp_path, demo):
    generate(tmp_path)
    for rel in (
        "annotations/instances_train.json",
        "annotations/lvis_val.json",
        "images/val/000000000013.jpg",
    ):
        a, b = (demo / rel).read_bytes(), (tmp_path / rel).read_bytes()
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest(), rel


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ("red circle", "pink blob")}, "'pink blob' is not"),
        ({"classes": ("red circle", "red solid circle")}, "'red solid circle' is not"),
        ({"classes": ("red circle", "red circle")}, "repeated names"),
        ({"classes": ("red circle", "blue star"), "novel": ("green star",)}, "not among demo classes"),
        ({"classes": ("red circle", "blue star"), "novel_in_train": 1.5}, "novel_in_train: need 0 <= value <= 1"),
        (
            {"classes": ("red circle", "blue star"), "novel": ("red circle", "blue star"), "novel_in_train": 0},
            "training scenes would be empty",
        ),
    ],
)
def test_bad_options(tmp_path, kwargs, message):
    with pytest.raises(demo_data.DemoDataError, match=message):
        demo_data.DemoOptions(out_dir=tmp_path, **kwargs)


def test_rle_encoding_matches_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    m = rng.random((13, 17)) > 0.6
    m[0, 0] = True  # starts with foreground: counts begin with a 0 run
    rle = demo_data.rle_uncompressed(m)
    assert rle["counts"][0] == 0
    decoded = mask_utils.decode(mask_utils.frPyObjects(rle, 13, 17))
    assert (decoded.astype(bool) == m).all()


# ------------------------------------------------------------------------------------------------ split kinds


def _preset_demo(name: str) -> dict:
    import yaml

    root = Path(__file__).resolve().parents[1]
    path = root / "config.yaml" if name == "default" else root / "workflow" / "presets" / f"{name}.yaml"
    return yaml.safe_load(path.read_text())["demo"]


@pytest.mark.parametrize(
    ("preset", "kind"),
    [("default", "combinations"), ("demo_solid_combinations", "combinations"), ("demo_unseen_shapes", "shapes")],
)
def test_both_split_kinds_are_configured(preset, kind):
    demo = _preset_demo(preset)
    assert sorted(demo["base"] + demo["novel"]) == sorted(demo["classes"])
    info = demo_data.split_kind(demo["classes"], demo["novel"])
    assert info["kind"] == kind, info
    base = [demo_data.ClassSpec.parse(c) for c in demo["base"]]
    for name in demo["novel"]:
        spec = demo_data.ClassSpec.parse(name)
        shape_in_base = any(b.shape == spec.shape for b in base)
        assert shape_in_base == (kind == "combinations")  # the two kinds differ exactly here
        assert any(b.colour == spec.colour for b in base)  # the colour is always seen
        assert not any(b.name == name for b in base)


def test_split_kind_by_hand():
    assert demo_data.split_kind(["red circle", "blue square", "blue circle"], ["blue circle"])["kind"] == "combinations"
    shapes = demo_data.split_kind(["red circle", "blue square", "red star"], ["red star"])
    assert shapes["kind"] == "shapes" and shapes["unseen_shapes"] == ["star"]
    mixed = demo_data.split_kind(["red circle", "blue square", "red star", "blue circle"], ["red star", "blue circle"])
    assert mixed["kind"] == "mixed"
    # an unseen colour is not an unseen combination
    colour = demo_data.split_kind(["red circle", "blue square", "green circle"], ["green circle"])
    assert colour["kind"] == "mixed" and colour["unseen_colours"] == ["green circle"]
    assert demo_data.split_kind(["red circle", "blue square"], [])["kind"] == "none"


def test_unseen_shape_split_generates_and_records_its_kind(tmp_path):
    demo = _preset_demo("demo_unseen_shapes")
    opts = demo_data.DemoOptions(
        out_dir=tmp_path, classes=tuple(demo["classes"]), novel=tuple(demo["novel"]), num_train=2, num_val=1
    )
    demo_data.run(opts)
    coco = json.loads((tmp_path / "annotations" / "instances_train.json").read_text())
    assert coco["info"]["novel_split"] == "shapes"
    lvis = json.loads((tmp_path / "annotations" / "lvis_train.json").read_text())
    rare = {c["name"] for c in lvis["categories"] if c["frequency"] == "r"}
    assert rare == set(demo["novel"])


def test_novel_in_train_controls_novel_objects_in_training_scenes_only(tmp_path, demo):
    """0: training scenes show base objects only (crowd groups too), validation scenes every class; 1 (the
    generator's default, the `demo` fixture) draws every class alike in both splits."""
    generate(tmp_path, novel_in_train=0.0, num_train=24, num_val=12)
    novel_ids = {c["id"] for c in read(tmp_path, "instances_train.json")["categories"] if c["name"] in NOVEL}
    for root, split, expect_novel in ((tmp_path, "train", False), (tmp_path, "val", True), (demo, "train", True)):
        anns = read(root, f"instances_{split}.json")["annotations"]
        ids = {a["category_id"] for a in anns}
        assert bool(ids & novel_ids) is expect_novel, (root, split)
        assert len(ids - novel_ids) >= 6  # base classes still drawn
    assert any(a["iscrowd"] for a in read(tmp_path, "instances_train.json")["annotations"])
    # the validation split does not depend on the option: the same images as with novel objects in training
    other = tmp_path / "uniform"
    generate(other, num_train=24, num_val=12)
    first_val = read(tmp_path, "instances_val.json")["images"][0]["file_name"]
    for rel in ("annotations/instances_val.json", f"images/val/{first_val}"):
        assert (tmp_path / rel).read_bytes() == (other / rel).read_bytes(), rel
    assert read(tmp_path, "instances_train.json") != read(other, "instances_train.json")
