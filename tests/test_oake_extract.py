"""OAKE extractors end to end on generated images with a tiny CLIP: rows equal direct computations,
resume, bad images, dry run, verify."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import demo_data
from pipeline.core import dry_run as dry
from pipeline.formats import feature_cache as cache
from pipeline.formats import proposal_file
from pipeline.models.clip import geometry, load_clip, preprocess, vision
from pipeline.oake import blocks, extract, objects
from pipeline.oake import globals as oake_globals
from pipeline.oake import verify as oake_verify

REPO = Path(__file__).resolve().parents[1]
TINY = "OADP-Tiny-ViT-32"
FP16 = 2e-3


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("oake_demo")
    demo_data.run(
        demo_data.DemoOptions(
            out_dir=out,
            classes=("red circle", "blue square", "green star"),
            num_train=2,
            num_val=5,
            sizes=((320, 240), (240, 320), (480, 360)),
            crowd_prob=0.0,
        )
    )
    return out


@pytest.fixture(scope="module")
def clip():
    return load_clip(TINY, "random")


def argv(demo: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--annotations",
        str(demo / "annotations/instances_val.json"),
        "--images",
        str(demo / "images/val"),
        "--output",
        str(out),
        "--model",
        TINY,
        "--weights",
        "random",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--batch-images",
        "2",
        *extra,
    ]


def image(demo: Path, image_id: int) -> Image.Image:
    return Image.open(demo / "images/val" / f"{image_id:012d}.jpg").convert("RGB")


def val_ids(demo: Path) -> list[int]:
    return sorted(im["id"] for im in json.loads((demo / "annotations/instances_val.json").read_text())["images"])


def test_globals_rows_are_the_full_resolution_cls(tmp_path, demo, clip):
    out = tmp_path / "shard-000.h5"
    stats = oake_globals.main(argv(demo, out))
    assert stats["images"] == 5 and not Path(str(out) + ".partial").exists()
    reader = cache.ShardReader(out)
    assert list(reader.image_ids) == val_ids(demo)
    for image_id in val_ids(demo)[:2]:
        x = preprocess.adaptive(image(demo, image_id))[None]
        with torch.inference_mode():
            direct = vision.encode_any_resolution(clip.model.visual, x)[0].numpy()
        np.testing.assert_allclose(reader.get(image_id)["embeddings"][0], direct, atol=FP16)
    assert reader.attrs["clip_weights"] == "random" and reader.attrs["kind"] == "globals"


def test_blocks_counts_boxes_and_block0(tmp_path, demo, clip):
    out = tmp_path / "shard-001.h5"
    blocks.main(argv(demo, out, "--shards", "2", "--shard", "1"))
    reader = cache.ShardReader(out)
    assert list(reader.image_ids) == cache.shard_image_ids(val_ids(demo), 2, 1)
    for image_id in reader.image_ids:
        img = image(demo, int(image_id))
        rec = reader.get(int(image_id))
        np.testing.assert_allclose(rec["boxes"], geometry.block_boxes(*img.size))
        with torch.inference_mode():
            b0 = vision.encode_standard(clip.model.visual, preprocess.standard(img)[None])[0].numpy()
            last = blocks.block_crops(img)[-1:]
            last = vision.encode_standard(clip.model.visual, preprocess.normalize_uint8(last))[0].numpy()
        np.testing.assert_allclose(rec["embeddings"][0], b0, atol=FP16)
        np.testing.assert_allclose(rec["embeddings"][-1], last, atol=FP16)


def write_proposals(demo: Path, path: Path) -> dict[int, np.ndarray]:
    """Ground-truth boxes (xyxy) plus one 3 px box that the w,h >= 4 filter removes."""
    data = json.loads((demo / "annotations/instances_val.json").read_text())
    per: dict[int, list] = {im["id"]: [] for im in data["images"]}
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        per[a["image_id"]].append([x, y, x + w, y + h])
    boxes = {i: np.array(b + [[5, 5, 8, 30]], dtype=np.float32) for i, b in per.items()}
    ids = sorted(boxes)
    proposal_file.write(path, ids, [boxes[i] for i in ids], [np.linspace(1, 0.5, len(boxes[i])) for i in ids])
    return boxes


def test_objects_rows_boxes_objectness(tmp_path, demo, clip):
    props = tmp_path / "val.h5"
    boxes = write_proposals(demo, props)
    out = tmp_path / "shard-000.h5"
    objects.main(argv(demo, out, "--proposals", str(props)))
    reader = cache.ShardReader(out)
    image_id = val_ids(demo)[0]
    rec = reader.get(image_id)
    kept = boxes[image_id][:-1]  # the 3 px box is gone
    np.testing.assert_allclose(rec["boxes"], kept)
    np.testing.assert_allclose(rec["objectness"], np.linspace(1, 0.5, len(kept) + 1)[:-1], atol=1e-3)
    enc = vision.ObjectAwareEncoder(clip.model.visual)
    crops, masks = preprocess.object_inputs(image(demo, image_id), kept[:1], enc.grid)
    with torch.inference_mode():
        direct = enc(preprocess.normalize_uint8(crops), masks)[0].numpy()
    np.testing.assert_allclose(rec["embeddings"][0], direct, atol=FP16)


def test_objects_int8_storage_is_close_to_float16(tmp_path, demo):
    props = tmp_path / "val.h5"
    write_proposals(demo, props)
    objects.main(argv(demo, tmp_path / "f16.h5", "--proposals", str(props)))
    objects.main(argv(demo, tmp_path / "i8.h5", "--proposals", str(props), "--storage", "int8"))
    a, b = cache.ShardReader(tmp_path / "f16.h5"), cache.ShardReader(tmp_path / "i8.h5")
    for image_id in a.image_ids:
        x, y = a.get(int(image_id))["embeddings"], b.get(int(image_id))["embeddings"]
        cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        assert cos.min() > 0.999


def test_objects_refuse_a_proposals_file_without_the_images(tmp_path, demo):
    props = tmp_path / "p.h5"
    proposal_file.write(props, [val_ids(demo)[0]], [np.array([[0, 0, 50, 50]])], [np.array([0.9])])
    with pytest.raises(ValueError, match=r"p\.h5: no proposals for image\(s\)"):
        objects.main(argv(demo, tmp_path / "o.h5", "--proposals", str(props)))


def test_resume_from_a_partial_shard_equals_a_full_run(tmp_path, demo):
    full = tmp_path / "full.h5"
    oake_globals.main(argv(demo, full))
    ids = val_ids(demo)
    reader = cache.ShardReader(full)
    # a shard interrupted after 2 images: same attrs as a real run would have written
    part = tmp_path / "resumed.h5"
    with cache.ShardWriter(
        part,
        ids,
        "globals",
        int(reader.attrs["dim"]),
        {k: v for k, v in reader.attrs.items() if k not in ("kind", "dim", "storage", "format_version", "skipped")},
    ) as w:
        for image_id in ids[:2]:
            w.add(image_id, reader.get(image_id)["embeddings"])
    assert Path(str(part) + ".partial").exists() and not part.exists()
    stats = oake_globals.main(argv(demo, part))
    assert stats["images"] == 3  # only the rest was extracted
    again = cache.ShardReader(part)
    for image_id in ids:
        np.testing.assert_array_equal(again.get(image_id)["embeddings"], reader.get(image_id)["embeddings"])


def test_bad_image_error_or_skip(tmp_path, demo):
    broken = tmp_path / "demo"
    shutil.copytree(demo, broken)
    bad_id = val_ids(demo)[3]
    (broken / "images/val" / f"{bad_id:012d}.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "shard-000.h5"
    with pytest.raises(ValueError, match=f"{bad_id:012d}.jpg: unreadable image"):
        oake_globals.main(argv(broken, out))
    oake_globals.main(argv(broken, tmp_path / "s.h5", "--on-bad-image", "skip"))
    reader = cache.ShardReader(tmp_path / "s.h5")
    skipped = json.loads(reader.attrs["skipped"])
    assert [s["image_id"] for s in skipped] == [bad_id] and "unreadable image" in skipped[0]["reason"]
    with pytest.raises(KeyError, match="was skipped"):
        reader.get(bad_id)
    assert len(reader.get(val_ids(demo)[0])["embeddings"]) == 1


def test_bad_image_keeps_earlier_work(tmp_path, demo):
    broken = tmp_path / "demo"
    shutil.copytree(demo, broken)
    ids = val_ids(demo)
    (broken / "images/val" / f"{ids[3]:012d}.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "shard-000.h5"
    with pytest.raises(ValueError):
        oake_globals.main(argv(broken, out))
    shutil.copy(demo / "images/val" / f"{ids[3]:012d}.jpg", broken / "images/val")  # the user fixes the file
    stats = oake_globals.main(argv(broken, out))
    assert stats["images"] == 2  # ids[0..2] were kept from the failed run


def test_dry_run_shards_hold_exactly_the_dry_run_set(tmp_path, demo, monkeypatch):
    """Each shard extracts its images among the first IMAGES of the file (file order, not id order): the union over
    the shards is the set, a shard may get none and is still a valid, verified shard."""
    monkeypatch.setattr(dry, "IMAGES", 2)
    data = json.loads((demo / "annotations/instances_val.json").read_text())
    data["images"].reverse()  # file order = descending ids
    ann = tmp_path / "instances_val.json"
    ann.write_text(json.dumps(data))
    ids = val_ids(demo)  # 5 ids: with 3 shards, shard 0 holds ids[0], ids[3]; shard 1 ids[1], ids[4]; shard 2 ids[2]
    shards = [tmp_path / f"shard-{i:03d}.h5" for i in range(3)]
    for i, out in enumerate(shards):
        blocks.main(argv(demo, out, "--annotations", str(ann), "--shards", "3", "--shard", str(i), "--dry-run"))
    held = [cache.ShardReader(p).image_ids.tolist() for p in shards]
    assert held == [[ids[3]], [ids[4]], []]  # the set is the two largest ids, the first two records of the file
    assert cache.ShardReader(shards[2]).attrs["dry_run"] is True
    verify = [*map(str, shards), "--annotations", str(ann), "--shards", "3"]
    assert oake_verify.main([*verify, "--dry-run-cache"])["bad"] == {}
    with pytest.raises(ValueError, match="3 bad shard"):  # compared with the full shares, every shard is short
        oake_verify.main(verify)
    blocks.main(argv(demo, shards[2], "--annotations", str(ann), "--shards", "3", "--shard", "2"))  # a full shard 2
    with pytest.raises(ValueError, match="1 bad shard"):
        oake_verify.main([*verify, "--dry-run-cache"])


def test_verify_cli_lists_and_fixes_bad_shards(tmp_path, demo):
    import h5py

    out = tmp_path / "shard-000.h5"
    oake_globals.main(argv(demo, out))
    ann = str(demo / "annotations/instances_val.json")
    assert oake_verify.main([str(out), "--annotations", ann, "--shards", "1"])["bad"] == {}
    with h5py.File(out, "r+") as f:
        f["embeddings"][1] = np.nan
    cmd = [sys.executable, "-m", "pipeline.oake.verify", str(out), "--annotations", ann, "--shards", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "BAD" in proc.stderr and str(out) in proc.stderr
    assert out.exists()
    proc = subprocess.run([*cmd, "--fix"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and not out.exists()
    # the ids check: a shard built for 2 shards does not pass as the only shard
    blocks.main(argv(demo, out, "--shards", "2", "--shard", "0"))
    assert oake_verify.main([str(out), "--annotations", ann, "--shards", "2"])["bad"] == {}
    with pytest.raises(ValueError, match="1 bad shard"):
        oake_verify.main([str(out), "--annotations", ann, "--shards", "1"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_extractors_on_gpu_match_cpu(tmp_path, demo, precision):
    props = tmp_path / "val.h5"
    write_proposals(demo, props)
    for name, module, extra in (
        ("g", oake_globals, []),
        ("b", blocks, []),
        ("o", objects, ["--proposals", str(props)]),
    ):
        cpu, gpu = tmp_path / f"{name}_cpu.h5", tmp_path / f"{name}_gpu.h5"
        module.main(argv(demo, cpu, *extra))
        module.main([*argv(demo, gpu, *extra), "--device", "cuda", "--precision", precision])
        a, b = cache.ShardReader(cpu), cache.ShardReader(gpu)
        for image_id in a.image_ids:
            x, y = a.get(int(image_id))["embeddings"], b.get(int(image_id))["embeddings"]
            assert x.shape == y.shape
            if len(x):
                assert ((x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)).min() > 0.99


def test_an_annotation_file_without_images_is_refused_at_the_start(tmp_path, demo):
    ann = tmp_path / "no_images.json"
    ann.write_text(json.dumps({"annotations": [], "categories": [{"id": 1, "name": "red circle"}]}))
    out = tmp_path / "shard-000.h5"
    args = argv(demo, out)
    args[args.index("--annotations") + 1] = str(ann)
    with pytest.raises(ValueError, match=r"no_images\.json: no 'images' key"):
        oake_globals.main(args)
    assert not out.exists() and not Path(f"{out}.partial").exists()
    with pytest.raises(ValueError, match=r"no_images\.json: no 'images' key"):
        extract.list_images(ann, demo / "images/val")
    ann.write_text(json.dumps({"images": [{"file_name": "a.jpg"}]}))
    with pytest.raises(ValueError, match=r"no_images\.json: 'images' entry #0 has no 'id'"):
        extract.list_images(ann, demo / "images/val")


def test_verify_names_an_annotation_file_without_images(tmp_path, demo):
    out = tmp_path / "shard-000.h5"
    with cache.ShardWriter(out, val_ids(demo), "globals", 2, {"x": 1}) as writer:
        for image_id in val_ids(demo):
            writer.add(image_id, np.array([[1.0, 0.0]]))
        writer.finalize()
    ann = tmp_path / "no_images.json"
    ann.write_text(json.dumps({"annotations": []}))
    with pytest.raises(ValueError, match=r"no_images\.json: no 'images' key"):
        oake_verify.main([str(out), "--annotations", str(ann), "--shards", "1"])
    cmd = [sys.executable, "-m", "pipeline.oake.verify", str(out), "--annotations", str(ann), "--shards", "1"]
    proc = subprocess.run([*cmd, "--log", str(tmp_path / "verify.log")], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "no_images.json: no 'images' key" in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" in (tmp_path / "verify.log").read_text()


def test_a_skipped_image_is_named_by_file_and_id(tmp_path, demo):
    broken = tmp_path / "demo"
    shutil.copytree(demo, broken)
    bad_id = val_ids(demo)[1]
    (broken / "images/val" / f"{bad_id:012d}.jpg").unlink()  # missing, not only corrupt
    with pytest.raises(ValueError, match=rf"{bad_id:012d}\.jpg: unreadable image, id {bad_id} \(FileNotFoundError"):
        oake_globals.main(argv(broken, tmp_path / "e.h5"))
    log = tmp_path / "s.log"
    oake_globals.main(argv(broken, tmp_path / "s.h5", "--on-bad-image", "skip", "--log", str(log)))
    warnings = [x for x in log.read_text().splitlines() if "WARNING pipeline.core.images: skipping" in x]
    assert len(warnings) == 1 and f"{bad_id:012d}.jpg: unreadable image, id {bad_id}" in warnings[0]
    reader = cache.ShardReader(tmp_path / "s.h5")
    assert list(reader.skipped) == [bad_id] and f"id {bad_id}" in reader.skipped[bad_id]
    assert bad_id not in reader and len(reader.image_ids) == 5
    # verify accepts a shard with a skipped image: its id is in the shard, with no rows
    ann = str(demo / "annotations/instances_val.json")
    assert oake_verify.main([str(tmp_path / "s.h5"), "--annotations", ann, "--shards", "1"])["bad"] == {}


def test_lvis_images_are_found_in_the_coco_folder_their_coco_url_names(tmp_path):
    """LVIS v1 val lists COCO train2017 images too: each file is found in the split folder its coco_url names."""
    from pipeline.core.images import list_images

    ann = tmp_path / "lvis_v1_val.json"
    records = [
        {"id": 139, "coco_url": "http://images.cocodataset.org/val2017/000000000139.jpg"},
        {"id": 9, "coco_url": "http://images.cocodataset.org/train2017/000000000009.jpg"},
        {"id": 5, "file_name": "sub/a.jpg"},
    ]
    ann.write_text(json.dumps({"images": records}))
    items = list_images(ann, tmp_path / "coco/val2017")
    assert [(it.image_id, it.path) for it in items] == [
        (5, tmp_path / "coco/val2017/sub/a.jpg"),
        (9, tmp_path / "coco/val2017/../train2017/000000000009.jpg"),
        (139, tmp_path / "coco/val2017/../val2017/000000000139.jpg"),
    ]
    ann.write_text(json.dumps({"images": [{"id": 3, "coco_url": "000000000003.jpg"}]}))
    with pytest.raises(ValueError, match=r"lvis_v1_val\.json: image 3 has neither file_name nor a coco_url"):
        list_images(ann, tmp_path)
