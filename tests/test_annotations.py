"""Annotation stage on the real COCO 80 / LVIS v1 1203 category metadata (method section 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import annotations
from pipeline.core import vocab
from tests import conftest
from tests.conftest import write_json


def _inside(data: dict) -> dict:
    """``conftest.make_coco`` draws y in [0, 500) on 480-pixel-high images, so some boxes lie wholly below their
    image and the stage drops them; move every box inside its image (only the box-geometry tests below meet
    degenerate boxes)."""
    for a in data["annotations"]:
        a["bbox"][1] = round(a["bbox"][1] * 0.9, 1)
    return data


def make_coco(*args, **kwargs) -> dict:
    return _inside(conftest.make_coco(*args, **kwargs))


def make_lvis(*args, **kwargs) -> dict:
    return _inside(conftest.make_lvis(*args, **kwargs))


# The 15 COCO classes outside the 65 (method section 2.1), written out independently of pipeline.core.vocab.
DROPPED = {
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "sports ball",
    "baseball bat",
    "baseball glove",
    "tennis racket",
    "wine glass",
    "hot dog",
    "potted plant",
    "dining table",
    "cell phone",
    "teddy bear",
    "hair drier",
}


def run_cli(*argv: str) -> int:
    return annotations.main(list(argv)) or 0


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_coco_split_matches_the_reference(coco_categories):
    names = [c["name"] for c in coco_categories]
    split = vocab.coco_split()
    assert (len(split.bases), len(split.novels)) == (48, 17)
    assert set(split.names) | DROPPED == set(names) and not set(split.names) & DROPPED
    order = {n: i for i, n in enumerate(names)}
    # both lists are in COCO-id order
    assert list(split.bases) == sorted(split.bases, key=order.get)
    assert list(split.novels) == sorted(split.novels, key=order.get)
    assert split.bases[:3] == ("person", "bicycle", "car") and split.bases[-1] == "toothbrush"
    assert split.novels[:3] == ("airplane", "bus", "cat") and split.novels[-1] == "scissors"


def test_coco_files(tmp_path, coco_categories):
    raw = make_coco(coco_categories, num_images=30)
    # image 5 gets an annotation of a dropped class only -> not in .min
    raw["annotations"] = [a for a in raw["annotations"] if a["image_id"] != 5]
    raw["annotations"].append({"id": 9999, "image_id": 5, "category_id": 10, "bbox": [1, 2, 3, 4], "iscrowd": 0})
    src = write_json(tmp_path / "instances_val2017.json", raw)
    out65, out48, outmin = (tmp_path / f"out.{k}.json" for k in ("65", "48", "65.min"))
    run_cli("coco", "--input", str(src), "--out-all", str(out65), "--out-base", str(out48))
    run_cli("min", "--input", str(out65), "--output", str(outmin))
    full, base, small = load(out65), load(out48), load(outmin)

    assert set(full) == set(base) == set(small) == {"images", "annotations", "categories"}
    assert [c["name"] for c in full["categories"]] == list(vocab.COCO_BASE + vocab.COCO_NOVEL)
    assert [c["id"] for c in full["categories"]] == list(range(65))
    assert full["categories"] == base["categories"] == small["categories"]

    old_name = {c["id"]: c["name"] for c in coco_categories}
    new_name = {c["id"]: c["name"] for c in full["categories"]}
    kept = [a for a in raw["annotations"] if old_name[a["category_id"]] not in DROPPED]
    assert len(full["annotations"]) == len(kept)
    for before, after in zip(kept, full["annotations"], strict=True):
        assert before["id"] == after["id"] and new_name[after["category_id"]] == old_name[before["category_id"]]
        assert {k: v for k, v in before.items() if k != "category_id"} == {
            k: v for k, v in after.items() if k != "category_id"
        }
    assert full["images"] == raw["images"]  # all images, unchanged

    # .48: all images and all 65 categories, base annotations only
    assert base["images"] == raw["images"]
    assert all(a["category_id"] < 48 for a in base["annotations"])
    assert len(base["annotations"]) == sum(a["category_id"] < 48 for a in full["annotations"])

    # .min: images with >= 1 annotation of the 65 classes; a crowd-only image counts
    min_ids = {im["id"] for im in small["images"]}
    assert 1 in min_ids  # crowd only
    assert 2 not in min_ids and 5 not in min_ids  # nothing / dropped class only
    expected = {a["image_id"] for a in full["annotations"]}
    assert min_ids == expected
    assert small["annotations"] == full["annotations"]
    # compact dump, no spaces
    assert b", " not in out65.read_bytes()[:2000] and b": " not in out65.read_bytes()[:2000]


def test_lvis_files(tmp_path, lvis_categories):
    raw = make_lvis(lvis_categories, num_images=40, per_image=30)
    src = write_json(tmp_path / "lvis_v1_train.json", raw)
    all_path, base_path = tmp_path / "l.1203.json", tmp_path / "l.866.json"
    run_cli("lvis", "--input", str(src), "--out-all", str(all_path), "--out-base", str(base_path))
    full, base = load(all_path), load(base_path)

    rare = [c for c in sorted(lvis_categories, key=lambda c: c["id"]) if c["frequency"] == "r"]
    common = [c for c in sorted(lvis_categories, key=lambda c: c["id"]) if c["frequency"] != "r"]
    assert (len(common), len(rare)) == (866, 337)
    assert [c["name"] for c in full["categories"]] == [c["name"] for c in common + rare]
    assert [c["id"] for c in full["categories"]] == list(range(1203))
    assert all(c["frequency"] == "r" for c in full["categories"][866:])
    names = {c["name"] for c in full["categories"]}
    assert "speaker_(stero_equipment)" in names and "monitor_(computer_equipment) computer_monitor" in names

    old = {c["id"]: c["name"] for c in lvis_categories}
    new = {c["id"]: c["name"] for c in full["categories"]}
    for before, after in zip(raw["images"], full["images"], strict=True):
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            assert [new[i] for i in after[key]] == [old[i] for i in before[key]]
    for before, after in zip(raw["annotations"], full["annotations"], strict=True):
        assert new[after["category_id"]] == old[before["category_id"]]
    assert base["images"] == full["images"] and base["categories"] == full["categories"]
    assert [a for a in full["annotations"] if a["category_id"] < 866] == base["annotations"]
    assert len(base["annotations"]) < len(full["annotations"])  # 30 per image over 1203 classes hits rare ones


def test_lvis_extras(tmp_path, lvis_categories):
    cats = lvis_categories[:20]
    raw = make_lvis(cats, num_images=6, per_image=5)
    src = write_json(tmp_path / "lvis_v1_train.json", raw)
    norare_path, info_path = tmp_path / "norare.json", tmp_path / "cat_info.json"
    run_cli("lvis-extras", "--input", str(src), "--out-norare", str(norare_path), "--out-cat-info", str(info_path))
    norare, info = load(norare_path), json.loads(info_path.read_text())
    rare_ids = {c["id"] for c in cats if c["frequency"] == "r"}
    assert rare_ids, "the first 20 LVIS classes include rare ones"
    assert norare["annotations"] == [a for a in raw["annotations"] if a["category_id"] not in rare_ids]
    assert norare["categories"] == raw["categories"]  # original ids kept (Detic format)
    # hand count for one category
    cid = raw["annotations"][-1]["category_id"]
    row = next(r for r in info if r["id"] == cid)
    assert row["instance_count"] == sum(a["category_id"] == cid for a in raw["annotations"])
    assert row["image_count"] == len({a["image_id"] for a in raw["annotations"] if a["category_id"] == cid})
    assert [r["id"] for r in info] == sorted(c["id"] for c in cats)


def test_demo_split_order_and_ids(tmp_path):
    cats = [{"id": i, "name": n} for i, n in enumerate(["a", "b", "c", "d", "e"], start=1)]
    raw = make_coco(cats, num_images=8)
    src = write_json(tmp_path / "train.json", raw)
    out_all, out_base = tmp_path / "train.all.json", tmp_path / "train.base.json"
    # names given out of id order are put in id order, bases first; "c" belongs to neither and is dropped
    run_cli(
        "demo",
        "--input",
        str(src),
        "--out-all",
        str(out_all),
        "--out-base",
        str(out_base),
        "--base",
        "d",
        "a",
        "--novel",
        "e",
        "b",
    )
    full = load(out_all)
    assert [(c["id"], c["name"]) for c in full["categories"]] == [(0, "a"), (1, "d"), (2, "b"), (3, "e")]
    assert len(full["annotations"]) == sum(a["category_id"] != 3 for a in raw["annotations"])


# ------------------------------------------------------------------------------------------- bad input


def _broken(kind: str, cats: list[dict]) -> dict:
    data = make_coco(cats, num_images=6)
    if kind == "missing key":
        del data["annotations"]
    elif kind == "duplicate image id":
        data["images"][3]["id"] = data["images"][2]["id"]
    elif kind == "duplicate annotation id":
        data["annotations"][4]["id"] = data["annotations"][1]["id"]
    elif kind == "unknown image":
        data["annotations"][2]["image_id"] = 4242
    elif kind == "unknown category":
        data["annotations"][2]["category_id"] = 777
    elif kind == "missing field":
        del data["annotations"][3]["bbox"]
    return data


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing key", "missing key 'annotations'"),
        ("duplicate image id", "duplicate image id(s) [3]"),
        ("duplicate annotation id", "duplicate annotation id(s)"),
        ("unknown image", "points at unknown image 4242"),
        ("unknown category", "points at unknown category 777"),
        ("missing field", "has no 'bbox'"),
    ],
)
def test_bad_input_names_the_problem_and_writes_nothing(tmp_path, coco_categories, kind, message):
    src = write_json(tmp_path / "instances_train2017.json", _broken(kind, coco_categories))
    out_all, out_base = tmp_path / "o.65.json", tmp_path / "o.48.json"
    with pytest.raises(annotations.AnnotationError) as err:
        run_cli("coco", "--input", str(src), "--out-all", str(out_all), "--out-base", str(out_base))
    assert str(src) in str(err.value) and message in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances_train2017.json"]


@pytest.mark.parametrize(
    ("base", "novel", "message"),
    [
        (["a", "zebra"], ["b"], "split names not among the file's categories: ['zebra']"),
        (["a", "b"], ["b", "c"], "split is not disjoint: ['b']"),
    ],
)
def test_bad_split_names_the_problem_and_writes_nothing(tmp_path, base, novel, message):
    cats = [{"id": i, "name": n} for i, n in enumerate("abcd", start=1)]
    src = write_json(tmp_path / "train.json", make_coco(cats, num_images=5))
    with pytest.raises(vocab.VocabError) as err:
        run_cli(
            "demo",
            "--input",
            str(src),
            "--out-all",
            str(tmp_path / "x.json"),
            "--out-base",
            str(tmp_path / "y.json"),
            "--base",
            *base,
            "--novel",
            *novel,
        )
    assert str(src) in str(err.value) and message in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.json"]


def test_coco_file_without_a_split_class(tmp_path, coco_categories):
    cats = [c for c in coco_categories if c["name"] != "scissors"]
    src = write_json(tmp_path / "instances_val2017.json", make_coco(cats, num_images=4))
    with pytest.raises(vocab.VocabError, match=r"instances_val2017.json: .*\['scissors'\]"):
        run_cli("coco", "--input", str(src), "--out-all", str(tmp_path / "a"), "--out-base", str(tmp_path / "b"))


def test_cli_reports_bad_input_as_one_line_and_exit_2(tmp_path, coco_categories):
    import subprocess
    import sys

    src = write_json(tmp_path / "bad.json", _broken("unknown image", coco_categories))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.annotations",
            "coco",
            "--input",
            str(src),
            "--out-all",
            str(tmp_path / "a.json"),
            "--out-base",
            str(tmp_path / "b.json"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 2
    assert "bad.json: annotation 3 points at unknown image 4242" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "a.json").exists()


# ------------------------------------------------------------------------------------------- box geometry

# (bbox, area) of annotations mmdet's CocoDataset.parse_data_info skips; images are 640 x 480
DEGENERATE = {
    "negative width": ([10.0, 10.0, -5.0, 20.0], 100.0),
    "zero width": ([10.0, 10.0, 0.0, 20.0], 100.0),
    "zero size": ([10.0, 10.0, 0.0, 0.0], 0.0),
    "width below 1": ([10.0, 10.0, 0.5, 20.0], 10.0),
    "height below 1": ([10.0, 10.0, 20.0, 0.9], 10.0),
    "zero area": ([10.0, 10.0, 20.0, 20.0], 0.0),
    "right of the image": ([640.0, 10.0, 20.0, 20.0], 400.0),
    "above the image": ([10.0, -30.0, 20.0, 30.0], 600.0),
}
# kept: at least 1 x 1 and overlapping the image, even if partly outside it
VALID = {
    "one pixel": ([10.0, 10.0, 1.0, 1.0], 1.0),
    "partly outside": ([630.0, -10.0, 20.0, 20.0], 400.0),
}


def _with_boxes(raw: dict, boxes: dict) -> dict[str, int]:
    """Overwrite the bbox/area of annotations of images >= 4 with ``boxes``; returns label -> annotation id."""
    targets = [a for a in raw["annotations"] if a["image_id"] >= 4]
    ids = {}
    for ann, (label, (bbox, area)) in zip(targets, boxes.items(), strict=False):
        ann["bbox"], ann["area"] = list(bbox), area
        ids[label] = ann["id"]
    assert len(ids) == len(boxes)
    return ids


@pytest.mark.parametrize("command", ["coco", "lvis", "lvis-extras"])
def test_degenerate_boxes_are_dropped_with_a_count_in_the_log(tmp_path, coco_categories, lvis_categories, command):
    if command == "coco":
        raw = make_coco(coco_categories, num_images=12)
    else:
        raw = make_lvis([c for c in lvis_categories if c["frequency"] != "r"][:20], num_images=12)
    ids = _with_boxes(raw, {**DEGENERATE, **VALID})
    bad = {ids[k] for k in DEGENERATE}
    src = write_json(tmp_path / "source.json", raw)
    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    flags = ["--out-norare", "--out-cat-info"] if command == "lvis-extras" else ["--out-all", "--out-base"]
    log_file = tmp_path / "stage.log"
    run_cli("--log", str(log_file), command, "--input", str(src), flags[0], str(out_a), flags[1], str(out_b))

    first = load(out_a)
    kept_ids = {a["id"] for a in first["annotations"]}
    assert not kept_ids & bad
    assert {ids[k] for k in VALID} <= kept_ids
    assert [im["id"] for im in first["images"]] == [im["id"] for im in raw["images"]]  # images are never dropped
    if command == "lvis-extras":
        info = {r["id"]: r["instance_count"] for r in load(out_b)}
        assert sum(info.values()) == len(raw["annotations"]) - len(bad)
    else:
        assert not {a["id"] for a in load(out_b)["annotations"]} & bad
    # both outputs are those of the input without the degenerate annotations
    clean_annotations = [a for a in raw["annotations"] if a["id"] not in bad]
    clean = write_json(tmp_path / "clean.json", {**raw, "annotations": clean_annotations})
    ref_a, ref_b = tmp_path / "ref_a.json", tmp_path / "ref_b.json"
    run_cli(command, "--input", str(clean), flags[0], str(ref_a), flags[1], str(ref_b))
    assert (load(out_a), load(out_b)) == (load(ref_a), load(ref_b))
    (message,) = [line for line in log_file.read_text().splitlines() if "WARNING" in line]
    assert f"{src}: dropped {len(bad)} of {len(raw['annotations'])} annotations" in message
    assert str(sorted(bad)) in message  # the ids


def test_min_file_leaves_out_images_whose_only_box_is_degenerate(tmp_path, coco_categories):
    raw = make_coco(coco_categories, num_images=6)
    (only,) = [a for a in raw["annotations"] if a["image_id"] == 3]  # of the last category, toothbrush: a base class
    only["bbox"] = [5.0, 5.0, 0.0, 10.0]
    src = write_json(tmp_path / "instances_val2017.json", raw)
    out65, out48, outmin = (tmp_path / f"out.{k}.json" for k in ("65", "48", "65.min"))
    run_cli("coco", "--input", str(src), "--out-all", str(out65), "--out-base", str(out48))
    run_cli("min", "--input", str(out65), "--output", str(outmin))
    assert 3 not in {im["id"] for im in load(outmin)["images"]}
    assert 3 in {im["id"] for im in load(out65)["images"]}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bbox", [1.0, 2.0, float("nan"), 4.0], "non-finite bbox"),
        ("bbox", [float("inf"), 2.0, 3.0, 4.0], "non-finite bbox"),
        ("bbox", [1.0, 2.0, 3.0, float("-inf")], "non-finite bbox"),
        ("bbox", [1.0, "2", 3.0, 4.0], "bbox that is not [x, y, w, h]"),
        ("bbox", [1.0, 2.0, True, 4.0], "bbox that is not [x, y, w, h]"),
        ("area", float("nan"), "non-finite or non-numeric area"),
    ],
)
def test_non_finite_box_is_refused_naming_file_and_id(tmp_path, coco_categories, field, value, message):
    raw = make_coco(coco_categories, num_images=6)
    raw["annotations"][4][field] = value
    ann_id = raw["annotations"][4]["id"]
    src = tmp_path / "instances_train2017.json"
    src.write_text(json.dumps(raw))  # Python writes NaN / Infinity, which json.load reads back
    out_all, out_base = tmp_path / "o.65.json", tmp_path / "o.48.json"
    with pytest.raises(ValueError) as err:
        run_cli("coco", "--input", str(src), "--out-all", str(out_all), "--out-base", str(out_base))
    assert isinstance(err.value, annotations.AnnotationError)
    assert f"{src}: annotation {ann_id} has a {message}" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instances_train2017.json"]
