"""The cost plan (pipeline.plan): work from the annotation files, predicted bytes against shards the extractors
really write, times from benchmark files, the state of existing outputs, full-size presets, the Snakemake rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import plan
from pipeline.models.clip import geometry
from pipeline.plan import disk, timing, work
from tests.conftest import TINY, make_demo_split, write_json

TOLERANCE = 0.05


def test_blocks_per_image_is_the_pyramid_of_the_size():
    # 640x480: block 0; level 1 640x480 -> 5 x 4 windows; level 2 426x320 -> 3 x 2; level 3 284x213 < 224: none
    assert work.blocks_per_image(640, 480) == 1 + 20 + 6
    for w, h in ((640, 480), (427, 640), (224, 224), (200, 500), (1333, 800)):
        assert work.blocks_per_image(w, h) == len(geometry.block_boxes(w, h))
    sizes = np.array([[640, 480], [200, 500], [640, 480]])
    assert work.block_rows(sizes).tolist() == [27, 1, 27]


def test_shard_members_follow_the_cache_assignment():
    from pipeline.formats.feature_cache.layout import shard_image_ids

    ids = np.array([3, 5, 8, 13, 21, 34, 55])
    for index in range(3):
        assert ids[work.shard_members(ids, 3, index, None)].tolist() == shard_image_ids(ids.tolist(), 3, index)
    assert ids[work.shard_members(ids, 3, 0, (3, 13, 21))].tolist() == [3, 13]


def _options(root: Path, splits: dict[str, Path], **kw) -> plan.PlanOptions:
    base = dict(
        dataset="demo",
        splits=tuple(f"{k}={v}" for k, v in splits.items()),
        clip_model=TINY,
        shards=2,
        objects_per_image=6,
        results=root / "results",
        bench=(root / "bench",),
        output=root / "results/plan/plan.json",
        checkpoints=False,
    )
    return plan.PlanOptions(**{**base, **kw})


def _extract(root: Path, demo: Path, folder: str, kinds, storage="float16", dry_run=False, shards=2) -> None:
    """Real OAKE extraction (tiny CLIP, random weights, CPU) into the results layout the plan reads."""
    from pipeline.oake import blocks, objects
    from pipeline.oake import globals as oake_globals

    runners = {"globals": oake_globals.main, "blocks": blocks.main, "objects": objects.main}
    ann, images = demo / f"annotations/instances_{folder}.json", demo / f"images/{folder}"
    for kind in kinds:
        for index in range(shards):
            out = root / f"results/oake/demo/{kind}/{folder}/shard-{index:03d}.h5"
            args = ["--annotations", str(ann), "--images", str(images), "--model", TINY, "--weights", "random"]
            args += ["--device", "cpu", "--workers", "0", "--output", str(out), "--shards", str(shards)]
            args += ["--shard", str(index)] + (["--dry-run"] if dry_run else [])
            if kind == "objects":
                args += ["--storage", storage, "--proposals", str(root / f"results/proposals/demo/{folder}.h5")]
            runners[kind](args)


def _proposals(root: Path, demo: Path, folder: str, per_image: int) -> int:
    """A proposals file with ``per_image`` random boxes per image, one of them 2 px wide (dropped by OAKE)."""
    from pipeline.formats import proposal_file

    data = json.loads((demo / f"annotations/instances_{folder}.json").read_text())
    rng = np.random.default_rng(0)
    ids, boxes = [], []
    for im in data["images"]:
        xy = rng.uniform(0, [im["width"] * 0.6, im["height"] * 0.6], size=(per_image, 2))
        b = np.concatenate([xy, xy + rng.uniform(8, 90, size=(per_image, 2))], 1)
        b[0, 2] = b[0, 0] + 2
        ids.append(im["id"])
        boxes.append(b)
    # the attrs proposals predict records
    attrs = {"model": "rpn_r18_fpn", "dry_run": False, "skipped": "[]"}
    attrs.update({k: "0" * 64 for k in ("checkpoint_sha256", "annotations_sha256", "train_annotations_sha256")})
    proposal_file.write(
        root / f"results/proposals/demo/{folder}.h5", ids, boxes, [np.ones(per_image)] * len(ids), attrs
    )
    return len(ids)


def _check_bytes(stages: list[dict], names: set[str]) -> list[float]:
    errors = []
    for stage in stages:
        if stage["stage"] not in names:
            continue
        for job in stage["jobs"]:
            assert job["state"] == "done", job
            error = abs(job["bytes"] - job["actual_bytes"]) / job["actual_bytes"]
            assert error <= TOLERANCE, (stage["stage"], job)
            errors.append(error)
    return errors


@pytest.mark.parametrize("storage", ["float16", "int8"])
def test_predicted_cache_bytes_within_5_percent_of_real_shards(tmp_path, storage):
    demo = make_demo_split(tmp_path, num_train=10, num_val=8)
    per_image = 16  # > 2 KiB of boxes: HDF5 packs smaller data into its metadata blocks
    for folder in ("train", "val"):
        _proposals(tmp_path, demo, folder, per_image)
        _extract(tmp_path, demo, folder, ("globals", "blocks", "objects"), storage=storage)
    splits = {f: demo / f"annotations/instances_{f}.json" for f in ("train", "val")}
    result = plan.build(_options(tmp_path, splits, object_storage=storage, objects_per_image=per_image))
    errors = _check_bytes(result["stages"], {"oake_globals", "oake_blocks", "oake_objects", "proposals_predict"})
    assert len(errors) == 3 * 2 * 2 + 2
    objects = next(s for s in result["stages"] if s["stage"] == "oake_objects" and s["folder"] == "train")
    # one 2 px box per image is dropped, as the extractor drops it
    assert objects["work"] == {
        "images": 10,
        "rows": 10 * (per_image - 1),
        "rows_per_image": per_image - 1.0,
        "dim": 64,
        "rows_from": "proposals file",
    }
    assert all(s["remaining_bytes"] == 0 for s in result["stages"] if s["stage"].startswith("oake_"))


def test_predicted_dry_run_cache_bytes_within_5_percent(tmp_path):
    demo = make_demo_split(tmp_path, num_train=12, num_val=2)
    _proposals(tmp_path, demo, "train", 9)
    _extract(tmp_path, demo, "train", ("globals", "blocks", "objects"), dry_run=True)
    splits = {"train": demo / "annotations/instances_train.json"}
    result = plan.build(_options(tmp_path, splits, dry_run=True, objects_per_image=9))
    assert result["splits"]["train"]["images"] == 8
    errors = _check_bytes(result["stages"], {"oake_globals", "oake_blocks", "oake_objects"})
    assert len(errors) == 3 * 2
    objects = next(s for s in result["stages"] if s["stage"] == "oake_objects")
    assert objects["work"]["rows"] == 8 * 5  # the dry run's 5 proposals per image (8 kept boxes each)


def test_plan_before_the_files_exist_uses_the_expected_sizes(tmp_path):
    splits = {"train": tmp_path / "missing_train.json", "val": tmp_path / "missing_val.json"}
    opts = _options(tmp_path, splits, expected_images=(6, 3), expected_sizes=("640x480", "200x500"), expected_classes=4)
    result = plan.build(opts)
    assert result["splits"]["train"]["images"] == 6
    assert result["splits"]["train"]["blocks_per_image"] == (27 + 1) / 2
    blocks = next(s for s in result["stages"] if s["stage"] == "oake_blocks" and s["folder"] == "train")
    assert blocks["work"]["rows"] == 3 * 27 + 3 * 1
    assert [j["state"] for j in blocks["jobs"]] == ["todo", "todo"]
    assert blocks["remaining_bytes"] == blocks["bytes"] == sum(j["bytes"] for j in blocks["jobs"])
    # shard 0 holds images 1, 3, 5 (640x480, 640x480, 640x480): 81 rows of 64 fp16 dims + 16 B boxes
    assert blocks["jobs"][0]["bytes"] == 81 * (64 * 2 + 16) + 3 * 9 + 4 * 8 + 7 * 8 + disk.SHARD_OVERHEAD["blocks"]
    with pytest.raises(ValueError, match="missing_train.json does not exist"):
        plan.build(_options(tmp_path, splits))


def test_a_variants_extraction_is_planned_once_on_the_training_split(tmp_path):
    """--variant-folders: each folder is one more extraction of its kind, on the training split only, as big as the
    configured one (same images, same proposals), with its own outputs and benchmark files."""
    splits = {"train": tmp_path / "missing_train.json", "val": tmp_path / "missing_val.json"}
    expected = {"expected_images": (6, 3), "expected_sizes": ("640x480",), "expected_classes": 4}
    base = plan.build(_options(tmp_path, splits, **expected))
    ablation = plan.build(
        _options(tmp_path, splits, variant_folders=("objects-mask_off", "objects-expand_constant"), **expected)
    )
    added = [s for s in ablation["stages"] if s not in base["stages"]]
    assert [(s["stage"], s["folder"]) for s in added] == [
        ("oake_objects", "train-mask_off"),
        ("oake_objects", "train-expand_constant"),
    ]
    objects = next(s for s in base["stages"] if s["stage"] == "oake_objects" and s["folder"] == "train")
    for stage in added:
        assert stage["bytes"] == objects["bytes"] and stage["work"] == objects["work"]
    assert added[0]["jobs"][1]["output"] == str(tmp_path / "results/oake/demo/objects-mask_off/train/shard-001.h5")
    # the seconds come from the variant's own benchmark file (the path of workflow/rules/oake.smk)
    bench = tmp_path / "results/benchmarks/oake_objects/demo/train-mask_off/shard-001.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    again = plan.build(_options(tmp_path, splits, variant_folders=("objects-mask_off",), **expected))
    (stage,) = [s for s in again["stages"] if s.get("folder") == "train-mask_off"]
    assert [j["measured_seconds"] for j in stage["jobs"]] == [None, 12.5]
    assert ablation["bytes_by_kind"]["objects"] == 3 * objects["bytes"] + (
        base["bytes_by_kind"]["objects"] - objects["bytes"]
    )
    # extraction settings of the whole run: the kind's folder on every split, not one more extraction
    run_wide = plan.build(_options(tmp_path, splits, kinds=("globals", "blocks", "objects-mask_off"), **expected))
    objects = [s for s in run_wide["stages"] if s["stage"] == "oake_objects"]
    assert [s["folder"] for s in objects] == ["train-mask_off", "val-mask_off"]
    assert run_wide["bytes_by_kind"] == base["bytes_by_kind"]
    with pytest.raises(ValueError, match="--variant-folders 'masks-off'"):
        plan.build(_options(tmp_path, splits, variant_folders=("masks-off",), **expected))


def test_times_come_from_the_device_benchmark_and_say_unmeasured_otherwise(tmp_path, capsys):
    bench = tmp_path / "bench"
    write_json(
        bench / "stages.json",
        {
            "benchmark": "stages",
            "device": "cpu",
            "device_name": "x86_64",
            "threads": 2,
            "oake": {TINY: {"globals": {"rows_per_s": 10.0}, "blocks": {"rows_per_s": 50.0}}},
            "train": {"oadp_demo": {"s_per_iter": 0.5, "images_per_iter": 2}},
        },
    )
    splits = {"train": tmp_path / "t.json"}
    opts = _options(tmp_path, splits, expected_images=(20,), expected_sizes=("640x480",), expected_classes=4)
    result = plan.build(opts)
    by = {s["stage"]: s for s in result["stages"]}
    assert by["oake_globals"]["seconds"] == pytest.approx(20 / 10.0)
    assert by["oake_blocks"]["seconds"] == pytest.approx(20 * 27 / 50.0)
    assert by["oake_objects"]["seconds"] is None and by["oake_objects"]["time_source"] == timing.UNMEASURED
    assert result["bench_files"] == [str(bench / "stages.json")]
    gpu = plan.build(_options(tmp_path, splits, expected_images=(20,), expected_sizes=("640x480",), device="h100"))
    assert all(s["seconds"] is None for s in gpu["stages"])
    rates = timing.load("cpu", [bench])
    assert rates.train_seconds("oadp_demo", 300 * 2) == pytest.approx(300 * 0.5)
    plan.run(opts)
    out = capsys.readouterr().out
    assert "oake_blocks" in out and "unmeasured" in out
    assert json.loads(opts.output.read_text())["totals"]["seconds"] == pytest.approx(2.0 + 20 * 27 / 50.0)


def test_existing_outputs_partial_shards_and_benchmark_seconds(tmp_path):
    splits = {"train": tmp_path / "t.json"}
    opts = _options(tmp_path, splits, expected_images=(4,), expected_sizes=("320x240",), kinds=("globals",))
    shard = opts.results / "oake/demo/globals/train/shard-001.h5"
    shard.parent.mkdir(parents=True)
    Path(f"{shard}.partial").write_bytes(b"x")
    bench = opts.results / "benchmarks/oake_globals/demo/train/shard-001.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n7.5\t0:00:07\t100\n")
    result = plan.build(opts)
    jobs = next(s for s in result["stages"] if s["stage"] == "oake_globals")["jobs"]
    assert [j["state"] for j in jobs] == ["todo", "partial"]
    assert jobs[1]["measured_seconds"] == 10.0
    assert disk.benchmark_seconds(tmp_path / "none.tsv") is None


def test_training_work_from_the_experiment_config(tmp_path):
    splits = {"train": tmp_path / "t.json", "val": tmp_path / "v.json"}
    opts = _options(
        tmp_path,
        splits,
        expected_images=(128, 96),
        expected_sizes=("320x240",),
        expected_classes=16,
        experiments=("vild_demo", "oadp_demo"),
        checkpoints=True,
    )
    result = plan.build(opts)
    train = {s["experiment"]: s for s in result["stages"] if s["stage"] == "train"}
    assert train["oadp_demo"]["work"]["iters"] == 300  # the cpu_slim schedule
    assert train["oadp_demo"]["work"]["reads_oake"] == ["globals", "blocks", "objects"]
    assert train["vild_demo"]["work"]["reads_oake"] == ["objects"]
    assert train["oadp_demo"]["bytes"] > train["vild_demo"]["bytes"] > 1_000_000
    predict = next(s for s in result["stages"] if s["stage"] == "train_predict" and s["experiment"] == "oadp_demo")
    assert predict["work"]["images"] == 96


def _full_size_tree(root: Path) -> dict[str, Path]:
    """Annotation JSONs with COCO 2017's and LVIS v1's image counts (640x480 and 480x640), no image files."""
    files = {}
    for name, count in (("coco_train", 118_287), ("coco_val", 5_000), ("lvis_train", 100_170), ("lvis_val", 19_809)):
        images = [
            {"id": i, "width": 640 if i % 2 else 480, "height": 480 if i % 2 else 640} for i in range(1, count + 1)
        ]
        files[name] = write_json(root / f"{name}.json", {"images": images, "annotations": [], "categories": []})
    return files


def test_full_size_presets_plan(tmp_path):
    files = _full_size_tree(tmp_path)
    for dataset, experiments in (("coco", ("vild_ov_coco", "oadp_ov_coco")), ("lvis", ("oadp_ov_lvis",))):
        opts = _options(
            tmp_path,
            {"train2017": files[f"{dataset}_train"], "val2017": files[f"{dataset}_val"]},
            dataset=dataset,
            clip_model="ViT-B-32",
            shards=64,
            objects_per_image=1000,
            experiments=experiments,
            checkpoints=False,
        )
        result = plan.build(opts)
        n = 118_287 if dataset == "coco" else 100_170
        blocks = next(s for s in result["stages"] if s["stage"] == "oake_blocks" and s["folder"] == "train2017")
        assert blocks["work"]["rows"] == n * 27 and len(blocks["jobs"]) == 64
        objects = next(s for s in result["stages"] if s["stage"] == "oake_objects" and s["folder"] == "train2017")
        row = 512 * 2 + 16 + 2
        assert objects["bytes"] == n * 1000 * row + n * 9 + (n + 64) * 8 + 64 * (56 + disk.SHARD_OVERHEAD["objects"])
        assert result["bytes_by_kind"]["objects"] > 100e9


@pytest.fixture(scope="module")
def reference_data(tmp_path_factory, coco_categories, lvis_categories) -> Path:
    from tests import reference_tree

    root = tmp_path_factory.mktemp("reference") / "data"
    reference_tree.make_tree(root, coco_categories, lvis_categories)
    return root


@pytest.mark.presets  # ViT-B-32 on a CPU: minutes (make test-presets)
@pytest.mark.parametrize("preset", ["coco", "lvis"])
def test_predicted_preset_dry_run_cache_bytes_within_5_percent(tmp_path, reference_data, preset):
    """The presets' dry-run caches as `make test-presets` writes them (ViT-B-32, 512 dims; 2 shards; the first 8
    images of each file; 5 objects per image of a proposals file with 1000 boxes per image), extracted by the
    extractors on the reference-style tree, against the plan."""
    from pipeline.formats import proposal_file
    from pipeline.oake import blocks, objects
    from pipeline.oake import globals as oake_globals

    sources = {
        "coco": reference_data / "coco/annotations/instances_train2017.json",
        "lvis": reference_data / "lvis_v1/annotations/lvis_v1_train.json",
    }
    ann, images = sources[preset], reference_data / "coco/train2017"
    results = tmp_path / "results"
    data = json.loads(ann.read_text())
    rng = np.random.default_rng(1)
    ids = [im["id"] for im in data["images"]]
    boxes = [
        np.concatenate([xy := rng.uniform(0, 300, (1000, 2)), xy + rng.uniform(1, 200, (1000, 2))], 1) for _ in ids
    ]
    props = results / f"proposals/{preset}/train2017.h5"
    proposal_file.write(props, ids, boxes, [rng.uniform(size=1000) for _ in ids], {"model": "rpn_r50_fpn"})
    runners = {"globals": oake_globals.main, "blocks": blocks.main, "objects": objects.main}
    for kind, runner in runners.items():
        for index in range(2):
            out = results / f"oake/{preset}/{kind}/train2017/shard-{index:03d}.h5"
            args = ["--annotations", str(ann), "--images", str(images), "--model", "ViT-B-32", "--weights", "random"]
            args += ["--device", "cpu", "--workers", "0", "--output", str(out), "--shards", "2", "--shard", str(index)]
            args += ["--dry-run"] + (["--proposals", str(props)] if kind == "objects" else [])
            args += ["--block0-box", "reference_quirk"] if kind == "blocks" else []
            runner(args)
    opts = _options(
        tmp_path, {"train2017": ann}, dataset=preset, clip_model="ViT-B-32", dry_run=True, objects_per_image=1000
    )
    result = plan.build(opts)
    assert result["splits"]["train2017"]["images"] == 8
    errors = _check_bytes(result["stages"], {"oake_globals", "oake_blocks", "oake_objects"})
    assert len(errors) == 3 * 2


def test_snakemake_plan_target_writes_the_plan(snakemake_bin, tmp_path):
    """`snakemake --force plan` in a fresh folder: the demo planned from its configured sizes, seed runs included,
    nothing else run."""
    import subprocess

    import yaml

    repo = Path(__file__).resolve().parents[1]
    (tmp_path / "config.yaml").write_text((repo / "config.yaml").read_text())
    cmd = [snakemake_bin, "--snakefile", str(repo / "Snakefile"), "--directory", str(tmp_path), "--cores", "1"]
    cmd += ["--force", "plan", "--config", "train={seeds: [1]}", "plan={device: h100}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "results/plan/plan.json").read_text())
    demo = yaml.safe_load((repo / "config.yaml").read_text())
    assert result["device"] == "h100" and result["splits"]["train"]["images"] == 128
    runs = [s["experiment"] for s in result["stages"] if s["stage"] == "train"]
    assert runs == [r for e in demo["experiments"] for r in (e, f"{e}+seed1")]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["logs", "plan"]
    assert "oake_objects" in proc.stdout and "unmeasured" in proc.stdout


PLAN_DEFAULTS = {
    "plan.device": "device",
    "oake.kinds": "kinds",
    "oake.shards": "shards",
    "oake.object_storage": "object_storage",
    "oake.compression": "compression",
    "proposals.max_per_img": "objects_per_image",
    "proposals.epochs": "rpn_epochs",
    "proposals.iters": "rpn_iters",
    "proposals.gpus": "rpn_gpus",
    "proposals.batch_size": "rpn_batch_size",
    "proposals.lr_batch": "rpn_lr_batch",
    "proposals.effective_batch": "rpn_effective_batch",
    "train.iters": "train_iters",
    "train.batch_size": "train_batch_size",
    "train.gpus": "train_gpus",
    "train.effective_batch": "train_effective_batch",
}


@pytest.mark.parametrize("key", sorted(PLAN_DEFAULTS))
def test_plan_cli_defaults_agree_with_the_schema(key):
    from tests.test_config_layers import schema_defaults

    value = schema_defaults()
    for part in key.split("."):
        value = value[part]
    default = plan.build_parser().get_default(PLAN_DEFAULTS[key])
    assert (list(default) if isinstance(default, tuple) else default) == value, key
