"""python -m pipeline.released features: the reference's released OAKE files (built here in its exact format: one
torch.save per image, {id:012d}.pth, float16 tensors under its keys) into verified shards."""

from __future__ import annotations

import io
import json
import os
import random
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.formats.feature_cache import ShardReader, shard_image_ids, verify_shard
from pipeline.models.clip import geometry
from pipeline.released import features, oake_files
from tests.conftest import write_json

DIM = 64  # OADP-Tiny-ViT-32's embedding dimension
MODEL = "OADP-Tiny-ViT-32"
FOLDER = "train2017"
# (id, width, height): landscape, portrait, square, below one block, wide
IMAGES = [(9, 640, 480), (25, 333, 500), (30, 224, 224), (34, 200, 150), (36, 480, 240)]


def annotation_file(tmp_path: Path, records=IMAGES) -> Path:
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h} for i, w, h in records]
    return write_json(tmp_path / "instances_train2017.json", {"images": images, "annotations": [], "categories": []})


def reference_file(kind: str, image_id: int, width: int, height: int) -> object:
    """What the reference's oadp/oake/{kind}.py saves for one image (seeded by the image id)."""
    g = torch.Generator().manual_seed(image_id)
    if kind == "globals":
        return F.normalize(torch.randn(1, DIM, generator=g)).squeeze(0).half()
    if kind == "blocks":
        boxes = torch.tensor(geometry.block_boxes(width, height, block0="reference_quirk"))
        return {"embeddings": F.normalize(torch.randn(len(boxes), DIM, generator=g)).half(), "bboxes": boxes.half()}
    n = 3 + image_id % 4
    xy = torch.rand(n, 2, generator=g) * torch.tensor([width / 2, height / 2])
    wh = 4 + torch.rand(n, 2, generator=g) * torch.tensor([width / 2 - 4, height / 2 - 4])
    return {
        "embeddings": F.normalize(torch.randn(n, DIM, generator=g)).half(),
        "bboxes": torch.cat([xy, xy + wh], 1).half(),
        "objectness": torch.rand(n, 1, generator=g).half(),
    }


def saved(obj: object, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def release(tmp_path: Path, kind: str, layout: str, files: dict[int, bytes] | None = None) -> list[Path]:
    """The reference's download layout of ``kind`` for IMAGES: a folder ``{kind}/train2017/``, ``{kind}.tar.gz``
    (members in shuffled order) or, for objects, two ``objects.NN.zip`` of bare names (the first with the file
    list ``objects``, as the reference's archiving script makes them). ``files`` replaces the files' bytes."""
    files = files if files is not None else {i: saved(reference_file(kind, i, w, h)) for i, w, h in IMAGES}
    root = tmp_path / "oake"
    root.mkdir(parents=True, exist_ok=True)
    names = {i: f"{i:012d}.pth" for i in files}
    if layout == "folder":
        folder = root / kind / FOLDER
        folder.mkdir(parents=True)
        for i, data in files.items():
            (folder / names[i]).write_bytes(data)
        return [root / kind]
    if layout == "tar":
        path = root / f"{kind}.tar.gz"
        order = list(files)
        random.Random(0).shuffle(order)
        with tarfile.open(path, "w:gz") as tf:
            for i in order:
                info = tarfile.TarInfo(f"{kind}/{FOLDER}/{names[i]}")
                info.size = len(files[i])
                tf.addfile(info, io.BytesIO(files[i]))
        return [path]
    ids = sorted(files)
    paths = []
    for k, part in enumerate((ids[:3], ids[3:])):
        path = root / f"objects.{k:02d}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            if k == 0:
                zf.writestr("objects", "\n".join(names[i] for i in ids) + "\n")
            for i in part:
                zf.writestr(names[i], files[i])
        paths.append(path)
    return paths


def run_import(ann: Path, sources: list[Path], kind: str, out: Path, *extra: str, shards: int = 1, shard: int = 0):
    """``python -m pipeline.released --log <out>.log features ...``; returns the command's result."""
    argv = ["--log", f"{out}.log", "features", "--kind", kind, "--source", *map(str, sources)]
    argv += ["--annotations", str(ann), "--model", MODEL, "--output", str(out), "--shards", str(shards)]
    return features.STAGE.main([*argv, "--shard", str(shard), *extra])


@pytest.mark.parametrize(("kind", "layout"), [("globals", "folder"), ("blocks", "tar"), ("objects", "zips")])
def test_imported_shards_equal_the_source_tensors_and_verify(tmp_path, kind, layout):
    ann = annotation_file(tmp_path)
    sources = release(tmp_path, kind, layout)
    sizes = {i: (w, h) for i, w, h in IMAGES}
    for shard in (0, 1):
        out = tmp_path / f"shard-{shard:03d}.h5"
        run_import(ann, sources, kind, out, shards=2, shard=shard)
        expected = shard_image_ids(sizes, 2, shard)
        assert verify_shard(out, expected) == []
        with ShardReader(out) as reader:
            assert reader.image_ids.tolist() == expected and reader.kind == kind and reader.dim == DIM
            assert reader.attrs["origin"] == "released" and str(sources[0]) in reader.attrs["release_sources"]
            for i in expected:
                ref, rows = reference_file(kind, i, *sizes[i]), reader.get(i)
                emb = ref if kind == "globals" else ref["embeddings"]
                np.testing.assert_array_equal(rows["embeddings"], emb.float().reshape(-1, DIM).numpy())
                if kind == "blocks":  # exact geometry, block 0 as the true centre square (xyxy)
                    w, h = sizes[i]
                    np.testing.assert_array_equal(rows["boxes"], geometry.block_boxes(w, h, block0="centre"))
                    side = min(w, h)
                    x0, y0 = (w - side) / 2, (h - side) / 2
                    assert rows["boxes"][0].tolist() == [x0, y0, x0 + side, y0 + side]
                if kind == "objects":
                    np.testing.assert_array_equal(rows["boxes"], ref["bboxes"].float().numpy())
                    np.testing.assert_array_equal(rows["objectness"], ref["objectness"].float().numpy()[:, 0])
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.spill"))


def test_files_in_torch_s_legacy_format_are_read_too(tmp_path):
    ann = annotation_file(tmp_path)
    files = {i: saved(reference_file("objects", i, w, h), _use_new_zipfile_serialization=False) for i, w, h in IMAGES}
    out = tmp_path / "objects.h5"
    run_import(ann, release(tmp_path, "objects", "folder", files), "objects", out)
    with ShardReader(out) as reader:
        i, w, h = IMAGES[0]
        np.testing.assert_array_equal(reader.get(i)["boxes"], reference_file("objects", i, w, h)["bboxes"].float())


def test_block0_can_keep_the_reference_quirk(tmp_path):
    ann = annotation_file(tmp_path)
    out = tmp_path / "blocks.h5"
    run_import(ann, release(tmp_path, "blocks", "folder"), "blocks", out, "--block0-box", "reference_quirk")
    with ShardReader(out) as reader:
        assert reader.attrs["block0_box"] == "reference_quirk"
        assert reader.get(9)["boxes"][0].tolist() == [80.0, 0.0, 480.0, 480.0]  # (W - H) / 2, 0, H, H
        assert reader.get(25)["boxes"][0].tolist() == [0.0, 83.5, 333.0, 333.0]


def test_tar_members_out_of_turn_spill_to_disk_and_are_cleaned_up(tmp_path):
    ann = annotation_file(tmp_path)
    out = tmp_path / "objects.h5"
    sources = release(tmp_path, "objects", "tar")
    run_import(ann, sources, "objects", out, "--buffer-mb", "0")
    assert "spilling" in Path(f"{out}.log").read_text() and not Path(f"{out}.spill").exists()
    with ShardReader(out) as reader:
        for i, w, h in IMAGES:
            ref = reference_file("objects", i, w, h)
            np.testing.assert_array_equal(reader.get(i)["embeddings"], ref["embeddings"].float().numpy())


def test_missing_images_are_listed_and_the_shard_is_not_finalised(tmp_path):
    ann = annotation_file(tmp_path)
    files = {i: saved(reference_file("globals", i, w, h)) for i, w, h in IMAGES}
    sources = release(tmp_path, "globals", "folder", {i: d for i, d in files.items() if i not in (25, 36)})
    out = tmp_path / "globals.h5"
    with pytest.raises(ValueError, match=r"2 of 5 images are in none of the release sources .*: \[25, 36\]; not fin"):
        run_import(ann, sources, "globals", out)
    assert not out.exists() and Path(f"{out}.partial").exists()
    assert "2 image(s) missing from the release sources: [25, 36]" in Path(f"{out}.log").read_text()
    # the missing files arrive: the import resumes after image 9 (committed before the first missing one)
    for i in (25, 36):
        (sources[0] / FOLDER / f"{i:012d}.pth").write_bytes(files[i])
    run_import(ann, sources, "globals", out)
    assert "resuming, 1 of 5 images already imported" in Path(f"{out}.log").read_text()
    assert verify_shard(out, [i for i, _, _ in IMAGES]) == []


def test_a_killed_import_resumes_from_its_last_commit(tmp_path, monkeypatch):
    ann = annotation_file(tmp_path)
    sources = release(tmp_path, "blocks", "folder")
    out = tmp_path / "blocks.h5"
    reads = []
    real_read = oake_files.read

    def killed_at_the_third(data, kind, where, dim):
        reads.append(where)
        if len(reads) == 3:
            raise KeyboardInterrupt  # the job is interrupted while importing image 3
        return real_read(data, kind, where, dim)

    monkeypatch.setattr(oake_files, "read", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_import(ann, sources, "blocks", out)
    assert not out.exists() and Path(f"{out}.partial").exists()
    reads.clear()
    monkeypatch.setattr(oake_files, "read", lambda *a: reads.append(a[2]) or real_read(*a))
    run_import(ann, sources, "blocks", out)
    assert [Path(r).name for r in reads] == [f"{i:012d}.pth" for i, _, _ in IMAGES[2:]]  # only the rest is read
    fresh = tmp_path / "fresh.h5"
    run_import(ann, sources, "blocks", fresh)
    with ShardReader(out) as a, ShardReader(fresh) as b:
        for i, _, _ in IMAGES:
            assert all(np.array_equal(a.get(i)[k], b.get(i)[k]) for k in ("embeddings", "boxes"))


def _bad(kind: str, change: str) -> object:
    i, w, h = IMAGES[1]
    obj = reference_file(kind, i, w, h)
    if change == "shape":
        return torch.cat([obj[None], obj[None]]) if kind == "globals" else {**obj, "objectness": obj["bboxes"]}
    if change == "dim":
        return {**obj, "embeddings": F.normalize(torch.randn(len(obj["bboxes"]), 32)).half()}
    if change == "missing":
        return {k: v for k, v in obj.items() if k != "bboxes"}
    if change == "extra":
        return {**obj, "scores": obj["objectness"]}
    if change == "dtype":
        return {**obj, "bboxes": obj["bboxes"].long()}
    if change == "norm":
        return {**obj, "embeddings": obj["embeddings"] * 2}
    obj["bboxes"][3, 0] += 10  # change == "geometry"
    return obj


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        ("globals", "shape", r"key '\(tensor\)' has shape \[2, 64\], expected \[1x64\]"),
        ("objects", "shape", r"key 'objectness' has shape \[\d+, 4\], expected \[\d+x1\]"),
        ("blocks", "dim", r"key 'embeddings' has shape \[\d+, 32\], expected \[Nx64\]"),
        ("blocks", "missing", r"missing key 'bboxes' \(a released blocks file has \['embeddings', 'bboxes'\]\)"),
        ("objects", "extra", r"unexpected key 'scores'"),
        ("objects", "dtype", r"key 'bboxes' is torch.int64, expected float16"),
        ("objects", "norm", r"key 'embeddings': rows \[0, 1, 2.*not L2-normalised"),
        ("blocks", "geometry", r"key 'bboxes' row 3 is .* the block geometry of a 333x500 image gives"),
    ],
)
def test_a_file_not_in_the_reference_format_is_refused_naming_file_and_key(tmp_path, kind, change, message):
    ann = annotation_file(tmp_path)
    files = {i: saved(reference_file(kind, i, w, h)) for i, w, h in IMAGES}
    files[25] = saved(_bad(kind, change))
    out = tmp_path / "shard.h5"
    with pytest.raises(ValueError, match=r"000000000025\.pth: " + message):
        run_import(ann, release(tmp_path, kind, "tar", files), kind, out)
    assert not out.exists()


class _Call:
    """Pickles as a call of ``fn(*args)``: what a crafted file runs when it is unpickled."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("kind", ["globals", "blocks", "objects"])
@pytest.mark.parametrize("form", ["torch.save", "legacy torch.save", "plain pickle"])
def test_a_file_whose_pickle_would_run_code_is_refused_and_nothing_runs(tmp_path, kind, form):
    marker = tmp_path / "pwned"
    i, w, h = IMAGES[2]
    obj = reference_file(kind, i, w, h)
    evil = _Call(os.system, f"touch {marker}")
    payload = {**obj, "embeddings": evil} if isinstance(obj, dict) else evil
    if form == "plain pickle":
        import pickle

        data = pickle.dumps(payload, protocol=2)
    else:
        data = saved(payload, _use_new_zipfile_serialization=form == "torch.save")
    files = {j: saved(reference_file(kind, j, a, b)) for j, a, b in IMAGES}
    files[i] = data
    out = tmp_path / "shard.h5"
    layout = "zips" if kind == "objects" else "folder"
    with pytest.raises(ValueError, match=r"000000000030\.pth: refused, ") as info:
        run_import(annotation_file(tmp_path), release(tmp_path, kind, layout, files), kind, out)
    assert "nothing was run" in str(info.value) and "system" in str(info.value)
    assert not marker.exists() and not out.exists()


def test_an_image_in_two_sources_is_refused_naming_both(tmp_path):
    ann = annotation_file(tmp_path)
    folder = release(tmp_path, "globals", "folder")
    tar = release(tmp_path / "again", "globals", "tar")
    with pytest.raises(ValueError, match=r"image \d+ is in two release files: .*globals.* and .*globals\.tar\.gz::"):
        run_import(ann, [*folder, *tar], "globals", tmp_path / "g.h5")


def test_members_of_other_kinds_are_ignored_and_any_split_folder_counts(tmp_path):
    """A source holding the whole data/coco/oake tree: only the kind's files (and bare names) count, in any split
    folder (LVIS's val images include COCO train2017 images: the reference links lvis_v1/oake/globals to COCO's)."""
    from pipeline.released.archives import member_id

    assert member_id("globals/train2017/000000000009.pth", "globals") == 9
    assert member_id("globals/val2017/000000000009.pth", "globals") == 9
    assert member_id("000000000009.pth", "objects") == 9
    assert member_id("oake/blocks/train2017/000000000009.pth", "globals") is None
    assert member_id("objects", "objects") is None and member_id("train2017/9.pt", "objects") is None
    ann = annotation_file(tmp_path)
    release(tmp_path, "globals", "folder")  # oake/globals/train2017/...
    release(tmp_path, "blocks", "folder")
    val = tmp_path / "oake/globals/val2017"
    val.mkdir()
    (tmp_path / "oake/globals/train2017/000000000030.pth").rename(val / "000000000030.pth")
    out = tmp_path / "g.h5"
    run_import(ann, [tmp_path / "oake"], "globals", out)
    assert verify_shard(out, [i for i, _, _ in IMAGES]) == []


def test_dry_run_imports_the_dry_run_images_of_the_shard(tmp_path):
    many = [(100 + k, 256, 224) for k in range(12)]
    ann = annotation_file(tmp_path, many)
    files = {i: saved(reference_file("globals", i, w, h)) for i, w, h in many}
    out = tmp_path / "g.h5"
    run_import(ann, release(tmp_path, "globals", "folder", files), "globals", out, "--dry-run")
    with ShardReader(out) as reader:
        assert reader.image_ids.tolist() == [100 + k for k in range(8)] and reader.attrs["dry_run"] is True


def test_the_command_line_lists_its_options_and_reports_what_it_imported(tmp_path, capsys):
    from pipeline import released

    with pytest.raises(SystemExit) as info:
        released.main(["features", "--help"])
    help_text = capsys.readouterr().out
    assert info.value.code == 0 and "--source" in help_text and "--block0-box" in help_text
    result = run_import(annotation_file(tmp_path), release(tmp_path, "globals", "folder"), "globals", tmp_path / "g.h5")
    assert result["images"] == 5 and json.dumps(result)


# ---------------------------------------------------------------------------------------------- the workflow


def test_oake_and_prompt_imports_replace_extraction_and_training_in_the_plan(snakemake_bin, tmp_path):
    from tests.test_workflow import snakemake

    (tmp_path / "globals").mkdir()
    (tmp_path / "objects.00.zip").write_bytes(b"")
    (tmp_path / "ml_coco.pth").write_bytes(b"")
    config = "oake={import: {globals: globals, objects: [objects.00.zip]}}"
    proc = snakemake(snakemake_bin, tmp_path, "-n", "-p", "--config", config, "prompts={import: {ml: ml_coco.pth}}")
    lines = (proc.stdout + proc.stderr).splitlines()
    imports = [x for x in lines if "python -m pipeline.released" in x and " features " in x]
    assert len(imports) == 8  # 2 kinds x 2 splits x 2 shards (the demo's oake.shards)
    assert all("--source globals --annotations" in x for x in imports if "--kind globals" in x)
    assert all("--source objects.00.zip" in x and "--storage float16" in x for x in imports if "--kind objects" in x)
    assert not [x for x in lines if "python -m pipeline.oake.globals" in x or "python -m pipeline.oake.objects" in x]
    assert len([x for x in lines if "python -m pipeline.oake.blocks" in x]) == 4  # blocks are still extracted
    assert len([x for x in lines if "pipeline.oake.verify" in x]) == 6
    prompts = [x for x in lines if "python -m pipeline.released" in x and " prompt " in x]
    assert len(prompts) == 1 and "--input ml_coco.pth --names-from results/annotations/demo/val.all.json" in prompts[0]
    assert not [x for x in lines if "python -m pipeline.prompts" in x and " ml " in x]


def test_a_missing_release_file_fails_at_parse_time_naming_the_key(snakemake_bin, tmp_path):
    from tests.test_workflow import snakemake

    proc = snakemake(snakemake_bin, tmp_path, "-n", "--config", "oake={import: {blocks: nowhere.tar.gz}}", check=False)
    assert proc.returncode != 0
    assert "config key 'oake.import.blocks': no such file or folder: nowhere.tar.gz" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_released_globals_and_ml_prompt_run_through_the_dag(snakemake_bin, tmp_path):
    """The demo's data, then its train globals and its ml prompt from files in the reference's layouts: verified
    shards holding the released rows, and ml.pth holding the released prompt; nothing else is built for them."""
    from tests.test_workflow import SMALL_DEMO, snakemake

    targets = ["results/demo_data/annotations/instances_train.json", "results/annotations/demo/val.all.json"]
    snakemake(snakemake_bin, tmp_path, "--cores", "2", *targets, demo=SMALL_DEMO)
    records = json.loads((tmp_path / "results/demo_data/annotations/instances_train.json").read_text())["images"]
    ids = sorted(im["id"] for im in records)
    folder = tmp_path / "release/globals/train"
    folder.mkdir(parents=True)
    for i in ids:
        (folder / f"{i:012d}.pth").write_bytes(saved(reference_file("globals", i, 0, 0)))
    names = SMALL_DEMO["classes"]
    ml = {
        "names": names,
        "embeddings": F.normalize(torch.randn(len(names), DIM)),
        "scaler": torch.tensor(20.0),
        "bias": torch.tensor(4.0),
    }
    torch.save(ml, tmp_path / "ml_demo.pth")
    config = ["oake={import: {globals: release/globals}}", "prompts={import: {ml: ml_demo.pth}}"]
    targets = ["results/oake/demo/globals/train/verify.json", "results/prompts/ml.pth"]
    proc = snakemake(snakemake_bin, tmp_path, "--cores", "2", "--config", *config, "--", *targets, demo=SMALL_DEMO)
    jobs = proc.stdout + proc.stderr
    assert "rule oake_import" in jobs and "rule prompts_import" in jobs and "rule teacher" not in jobs
    report = json.loads((tmp_path / "results/oake/demo/globals/train/verify.json").read_text())
    assert report["bad"] == {} and len(report["checked"]) == 2
    seen = []
    for shard in sorted((tmp_path / "results/oake/demo/globals/train").glob("shard-*.h5")):
        with ShardReader(shard) as reader:
            assert reader.attrs["origin"] == "released"
            for i in reader.image_ids.tolist():
                ref = reference_file("globals", i, 0, 0).float().numpy()
                np.testing.assert_array_equal(reader.get(i)["embeddings"][0], ref)
                seen.append(i)
    assert sorted(seen) == ids
    got = torch.load(tmp_path / "results/prompts/ml.pth", weights_only=True)
    assert got["names"] == names and torch.equal(got["embeddings"], ml["embeddings"]) and got["scaler"] == 20.0
