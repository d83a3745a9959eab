"""dataset: custom: the checks of a user's COCO-format dataset, its remapping, and the generator's custom view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import annotations
from pipeline.core import vocab
from pipeline.formats import custom_dataset
from tests.conftest import custom_dataset_dicts, write_custom_dataset

NOVEL = ["étoile rouge"]


def _check(paths: dict[str, str], novel=NOVEL, base=None) -> vocab.Split:
    return custom_dataset.check_dataset(
        {s: paths[f"{s}_annotations"] for s in ("train", "val")},
        {s: paths[f"{s}_images"] for s in ("train", "val")},
        novel,
        base,
    )


def test_split_is_every_other_category_in_id_order(tmp_path):
    split = _check(write_custom_dataset(tmp_path))
    # ids 10 < 31 < 1000007 are the bases, whatever order the files list them in
    assert split == vocab.Split(("blue-square", "GREEN STAR", "Red Circle"), ("étoile rouge",))


def test_an_explicit_base_list_leaves_the_other_categories_out(tmp_path):
    split = _check(write_custom_dataset(tmp_path), base=["Red Circle", "GREEN STAR"])
    assert split == vocab.Split(("GREEN STAR", "Red Circle"), ("étoile rouge",))


def _broken(kind: str) -> tuple[dict, list[str], list[str] | None]:
    """The hand-made dataset with one fault, and the novel / base lists to check it with."""
    data = custom_dataset_dicts()
    novel, base = list(NOVEL), None
    if kind == "unknown novel name":
        novel = ["etoile Rouge"]
    elif kind == "duplicate category name":
        data["val"]["categories"][1]["name"] = "GREEN STAR"  # the val file lists GREEN STAR first
    elif kind == "box outside its image":
        data["val"]["annotations"][1]["bbox"] = [40, 5, 30, 30]  # x + w = 70 > width 60
    elif kind == "empty val split":
        data["val"]["images"], data["val"]["annotations"] = [], []
    elif kind == "no base box in train":
        data["train"]["annotations"] = [a for a in data["train"]["annotations"] if a["category_id"] == 66]
    elif kind == "base and novel overlap":
        base = ["Red Circle", "étoile rouge"]
    elif kind == "different categories":
        data["val"]["categories"][0]["name"] = "green star"
    elif kind == "names differing by case or spacing":
        for split in ("train", "val"):
            data[split]["categories"].append({"id": 77, "name": "red  circle"})  # beside 'Red Circle'
    return data, novel, base


@pytest.mark.parametrize(
    ("kind", "messages"),
    [
        (
            "unknown novel name",
            ["train.json", "split names not among the file's categories: ['etoile Rouge']", "closest ['étoile rouge'"],
        ),
        ("duplicate category name", ["val.json", "duplicate category name(s) ['GREEN STAR']"]),
        ("box outside its image", ["val.json", "annotation 2 has a box [40, 5, 30, 30]", "image 8 (v/x.jpg, 60x40)"]),
        ("empty val split", ["val.json", "the val split is empty: no images"]),
        ("no base box in train", ["train.json", "the train split is empty", "base class"]),
        ("base and novel overlap", ["train.json", "split is not disjoint: ['étoile rouge']"]),
        ("different categories", ["train.json and", "val.json", "id 31 is 'GREEN STAR' in the first, 'green star'"]),
        (
            "names differing by case or spacing",
            ["train.json", "class names 'Red Circle' and 'red  circle' differ only by case or spacing"],
        ),
    ],
)
def test_bad_input_is_refused_naming_it(tmp_path, kind, messages):
    data, novel, base = _broken(kind)
    with pytest.raises(ValueError) as err:
        _check(write_custom_dataset(tmp_path, data), novel=novel, base=base)
    for message in messages:
        assert message in str(err.value), str(err.value)


def test_a_missing_image_file_is_named(tmp_path):
    paths = write_custom_dataset(tmp_path)
    missing = Path(paths["train_images"]) / "shelf 2/deep/b.jpg"
    missing.unlink()
    with pytest.raises(custom_dataset.CustomDatasetError) as err:
        _check(paths)
    assert "train.json: 1 image file(s) missing, first: image 42" in str(err.value)
    assert str(missing) in str(err.value)


def test_a_passed_check_is_remembered_until_a_file_changes(tmp_path, monkeypatch):
    paths = write_custom_dataset(tmp_path / "data")
    args = (
        {s: paths[f"{s}_annotations"] for s in ("train", "val")},
        {s: paths[f"{s}_images"] for s in ("train", "val")},
        NOVEL,
        None,
        tmp_path / "cache/check.json",
    )
    first = custom_dataset.check_dataset_cached(*args)
    assert first.novels == ("étoile rouge",)

    def not_again(*_args):
        raise AssertionError("checked again")

    with monkeypatch.context() as m:
        m.setattr(custom_dataset, "check_dataset", not_again)
        assert custom_dataset.check_dataset_cached(*args) == first
    data = custom_dataset_dicts()
    data["val"]["annotations"][1]["bbox"] = [45.5, 5, 30, 30]  # a longer file: its size changes
    write_custom_dataset(tmp_path / "data", data)
    with pytest.raises(custom_dataset.CustomDatasetError, match="annotation 2 has a box"):
        custom_dataset.check_dataset_cached(*args)


def test_closest_names_ignore_case_and_fall_back_to_the_best_match():
    names = ["Red Circle", "blue-square", "GREEN STAR", "étoile rouge"]
    assert vocab.closest("red circle", names)[0] == "Red Circle"
    assert vocab.closest("blue square", names)[0] == "blue-square"
    assert vocab.closest("zzzz", names, n=3) and len(vocab.closest("zzzz", names, n=3)) == 1


def _remap(tmp_path: Path, paths: dict[str, str], split: str, *extra: str) -> tuple[dict, dict]:
    out_all, out_base = tmp_path / f"{split}.all.json", tmp_path / f"{split}.base.json"
    annotations.main(
        [
            "custom",
            "--input",
            paths[f"{split}_annotations"],
            "--images",
            paths[f"{split}_images"],
            "--split",
            split,
            "--out-all",
            str(out_all),
            "--out-base",
            str(out_base),
            "--novel",
            *NOVEL,
            *extra,
        ]
    )
    return json.loads(out_all.read_text()), json.loads(out_base.read_text())


def test_custom_files_are_remapped_base_first_with_defaults_filled_in(tmp_path):
    paths = write_custom_dataset(tmp_path / "data")
    full, base = _remap(tmp_path, paths, "train")
    assert [(c["id"], c["name"]) for c in full["categories"]] == [
        (0, "blue-square"),
        (1, "GREEN STAR"),
        (2, "Red Circle"),
        (3, "étoile rouge"),
    ]
    anns = {a["id"]: a for a in full["annotations"]}
    assert {i: a["category_id"] for i, a in anns.items()} == {900: 2, 901: 3, 902: 0, 903: 1}
    # iscrowd and area filled in where missing, kept where given; segmentation only where it was
    assert [(anns[i]["iscrowd"], anns[i]["area"]) for i in (900, 901, 902, 903)] == [
        (0, 400.0),
        (0, 1200.0),
        (1, 4096.0),
        (0, 120.0),
    ]
    assert "segmentation" in anns[902] and "segmentation" not in anns[900]
    assert sorted(a["id"] for a in base["annotations"]) == [900, 902, 903]  # no novel box
    assert [im["file_name"] for im in base["images"]] == ["shelf-1/a.jpg", "shelf 2/deep/b.jpg", "c.jpg"]
    val, _ = _remap(tmp_path, paths, "val", "--base", "Red Circle", "blue-square")
    # an explicit base list: GREEN STAR is in neither list and is left out with its boxes
    assert [c["name"] for c in val["categories"]] == ["blue-square", "Red Circle", "étoile rouge"]
    assert {a["id"]: a["category_id"] for a in val["annotations"]} == {1: 2, 2: 0, 3: 1}


def test_the_stage_refuses_a_box_outside_its_image_and_writes_nothing(tmp_path):
    data = custom_dataset_dicts()
    data["train"]["annotations"][0]["bbox"] = [10, -5, 20, 20]
    paths = write_custom_dataset(tmp_path / "data", data)
    with pytest.raises(custom_dataset.CustomDatasetError, match="annotation 900 has a box"):
        _remap(tmp_path, paths, "train")
    assert not list(tmp_path.glob("*.json"))


def test_the_generator_writes_a_custom_dataset_with_odd_ids_names_and_folders(tmp_path):
    from pipeline import demo_data
    from pipeline.demo_data.custom import category_id, custom_name

    classes = ["red circle", "blue square", "green striped star", "red star"]
    demo_data.main(
        [
            "--out-dir",
            str(tmp_path / "demo"),
            "--classes",
            *classes,
            "--num-train",
            "3",
            "--num-val",
            "2",
            "--sizes",
            "128x96",
            "--crowd-prob",
            "1",
            "--custom",
            str(tmp_path / "custom"),
        ]
    )
    names = [custom_name(n, k) for k, n in enumerate(classes)]
    assert names == ["Red Circle", "blue-square", "GREEN STRIPED STAR", "étoile rouge"]
    assert [category_id(k) for k in range(4)] == [1000007, 10, 31, 66]
    root = tmp_path / "custom"
    train = json.loads((root / "annotations/train.json").read_text())
    val = json.loads((root / "annotations/val.json").read_text())
    assert [(c["id"], c["name"]) for c in val["categories"]] == sorted(
        zip([1000007, 10, 31, 66], names, strict=True), reverse=True
    )
    assert all("/" in im["file_name"] for im in train["images"] + val["images"])
    assert any(a["iscrowd"] for a in val["annotations"]) and all("segmentation" in a for a in val["annotations"])
    assert all(set(a) == {"id", "image_id", "category_id", "bbox"} for a in train["annotations"])
    assert {im["id"] % 1000 for im in train["images"]} == {7}
    split = custom_dataset.check_dataset(
        {s: root / f"annotations/{s}.json" for s in ("train", "val")},
        {s: root / "images" / s for s in ("train", "val")},
        ["étoile rouge"],
    )
    assert split.novels == ("étoile rouge",) and split.bases == ("blue-square", "GREEN STRIPED STAR", "Red Circle")
