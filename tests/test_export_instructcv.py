"""pipeline.export_instructcv on demo data: one pair per image and class present, InstructCV's files, the class's
boxes drawn in blue where its annotations are and nowhere else; detections above the threshold label pairs."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_demo_split


@pytest.fixture
def demo(tmp_path) -> Path:
    return make_demo_split(tmp_path, num_train=1, num_val=3)


def _export(tmp_path: Path, demo: Path, out: str, *extra: str) -> Path:
    from pipeline import export_instructcv

    export_instructcv.main(
        ["--annotations", str(tmp_path / "val.all.json"), "--images", str(demo / "images/val"),
         "--out-dir", str(tmp_path / out / "image_pairs_evaluation"), *extra]
    )  # fmt: skip
    return tmp_path / out / "image_pairs_evaluation"


def test_ground_truth_pairs_in_instructcv_layout(tmp_path, demo):
    templates = ["detect the {}", "Locate every {} in the image."]
    out = _export(tmp_path, demo, "gt", "--templates", *templates)
    val = json.loads((tmp_path / "val.all.json").read_text())
    names = {c["id"]: c["name"] for c in val["categories"]}
    stems = {im["id"]: Path(im["file_name"]).stem for im in val["images"]}
    expected: dict[str, list] = defaultdict(list)
    for a in val["annotations"]:
        x, y, w, h = a["bbox"]
        expected[f"{stems[a['image_id']]}_det_{names[a['category_id']]}"].append([x, y, x + w, y + h])
    seeds = json.loads((out / "seeds.json").read_text())
    assert sorted(p for p, _ in seeds) == sorted(expected) and all(s == [p] for p, s in seeds)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(expected)
    assert len(expected) == len({(a["image_id"], a["category_id"]) for a in val["annotations"]})
    for pair, boxes in expected.items():
        folder = out / pair
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"{pair}_0.jpg", f"{pair}_1.jpg", "prompt.json", "bbox.json"]
        )
        assert json.loads((folder / "bbox.json").read_text()) == {"bbox": boxes}
        name = pair.split("_det_", 1)[1]
        assert json.loads((folder / "prompt.json").read_text())["edit"] in [t.format(name) for t in templates]
        stem = pair.split("_det_")[0]
        assert (folder / f"{pair}_0.jpg").read_bytes() == (demo / "images/val" / f"{stem}.jpg").read_bytes()
        before = np.asarray(Image.open(folder / f"{pair}_0.jpg").convert("RGB"), dtype=float)
        after = np.asarray(Image.open(folder / f"{pair}_1.jpg").convert("RGB"), dtype=float)
        assert before.shape == after.shape
        drawn = np.zeros(before.shape[:2], bool)
        for x1, y1, x2, y2 in boxes:  # the middle of each edge is blue (4 px lines inside the box)
            cx, cy = round((x1 + x2) / 2), round((y1 + y2) / 2)
            for px, py in ((cx, int(y1) + 1), (cx, int(y2) - 2), (int(x1) + 1, cy), (int(x2) - 2, cy)):
                assert np.abs(after[py, px] - (0, 0, 255)).max() < 70, (pair, px, py)
            drawn[max(int(y1) - 3, 0) : int(y2) + 4, max(int(x1) - 3, 0) : int(x2) + 4] = True
        # away from the boxes' outlines the picture is the input (up to JPEG noise)
        inner = np.zeros_like(drawn)
        for x1, y1, x2, y2 in boxes:
            inner[int(y1) + 8 : int(y2) - 8, int(x1) + 8 : int(x2) - 8] = True
        assert np.abs(after - before)[~drawn | inner].mean() < 3


def test_detections_above_the_threshold_label_the_pairs(tmp_path, demo):
    val = json.loads((tmp_path / "val.all.json").read_text())
    ids = sorted(im["id"] for im in val["images"])
    stems = {im["id"]: Path(im["file_name"]).stem for im in val["images"]}
    dets = [
        {"image_id": ids[0], "category_id": 3, "bbox": [10, 20, 30, 40], "score": 0.9},
        {"image_id": ids[0], "category_id": 3, "bbox": [100, 100, 20, 20], "score": 0.6},
        {"image_id": ids[0], "category_id": 0, "bbox": [5, 5, 10, 10], "score": 0.4},  # below 0.5
        {"image_id": ids[1], "category_id": 1, "bbox": [50, 60, 30, 30], "score": 0.7},
        {"image_id": 999999, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9},  # not an image of the file
    ]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = _export(tmp_path, demo, "det", "--detections", str(tmp_path / "dets.json"), "--score-thr", "0.5")
    seeds = [p for p, _ in json.loads((out / "seeds.json").read_text())]
    assert seeds == [f"{stems[ids[0]]}_det_red star", f"{stems[ids[1]]}_det_blue square"]
    assert json.loads((out / seeds[0] / "bbox.json").read_text()) == {"bbox": [[10, 20, 40, 60], [100, 100, 120, 120]]}
    assert json.loads((out / seeds[0] / "prompt.json").read_text()) == {"edit": "detect the red star"}
    dets.append({"image_id": ids[0], "category_id": 7, "bbox": [0, 0, 5, 5], "score": 0.9})
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    with pytest.raises(ValueError, match="record 5 has category_id 7"):
        _export(tmp_path, demo, "det", "--detections", str(tmp_path / "dets.json"))
    assert seeds == [p for p, _ in json.loads((out / "seeds.json").read_text())]  # the earlier export is untouched
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_instruction_choice_is_per_pair_and_templates_need_one_slot(tmp_path):
    from pipeline.export_instructcv import ExportOptions, instruction

    templates = ("a {}", "b {}", "c {}", "d {}")
    picks = {instruction(templates, 0, f"img_det_{k}") for k in range(40)}
    assert picks == set(templates)  # every template is used
    assert instruction(templates, 0, "x_det_y") == instruction(templates, 0, "x_det_y")
    with pytest.raises(ValueError, match="exactly one"):
        ExportOptions(annotations=tmp_path, images=tmp_path, out_dir=tmp_path, templates=("detect",))


def _rename_classes(tmp_path: Path, names: dict[int, str]) -> dict:
    path = tmp_path / "val.all.json"
    val = json.loads(path.read_text())
    for c in val["categories"]:
        c["name"] = names.get(c["id"], c["name"])
    path.write_text(json.dumps(val))
    return val


def test_long_class_names_give_bounded_distinct_readable_pair_names(tmp_path, demo):
    """Four 300-character names that share their first 290 characters: every file name within 255 bytes, one folder
    per pair, each starting with its class's words and ending in a hash of the full name; the instruction keeps the
    full name."""
    import hashlib

    prefix = "a very long and careful description of one of the shapes " * 5  # 285 characters
    long_names = {k: (prefix + f"number {k} is here")[:300] for k in range(4)}
    assert len({n[:290] for n in long_names.values()}) == 1 and all(len(n) == 300 for n in long_names.values())
    val = _rename_classes(tmp_path, long_names)
    out = _export(tmp_path, demo, "long")
    pairs = {(a["image_id"], a["category_id"]) for a in val["annotations"]}
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == len(pairs) and len({p.name for p in folders}) == len(pairs)
    stems = {im["id"]: Path(im["file_name"]).stem for im in val["images"]}
    for image_id, category_id in pairs:
        name = long_names[category_id]
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        matches = [p for p in folders if p.name.startswith(f"{stems[image_id]}_det_a very long and careful")
                   and p.name.endswith(f"~{digest}")]  # fmt: skip
        assert len(matches) == 1, (image_id, category_id)
        folder = matches[0]
        for f in [folder, *folder.iterdir()]:
            assert len(f.name.encode()) <= 255, f.name
        assert json.loads((folder / "prompt.json").read_text())["edit"] == f"detect the {name}"
    seeds = json.loads((out / "seeds.json").read_text())
    assert sorted(p for p, _ in seeds) == sorted(p.name for p in folders)


def test_two_classes_that_give_one_pair_name_are_refused_naming_both(tmp_path, demo):
    _rename_classes(tmp_path, {0: "a/b", 1: "a_b"})
    with pytest.raises(ValueError, match=r"val\.all\.json: classes 'a/b' and 'a_b' give the same InstructCV pair"):
        _export(tmp_path, demo, "same")
    assert not (tmp_path / "same").exists() or not any((tmp_path / "same").iterdir())
