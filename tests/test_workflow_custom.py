"""dataset: custom through Snakemake in a temporary working directory: bad input refused at parse time, before any
job, and a generated custom dataset with odd ids and names run end to end."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import TINY, write_custom_dataset
from tests.test_custom_dataset import _broken

REPO = Path(__file__).resolve().parents[1]


def snakemake(snakemake_bin: str, workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` with ``config`` as the working directory's config.yaml."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    cmd = [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def custom_config(paths: dict, novel: list[str], **more) -> dict:
    """A custom run with no file from elsewhere: random tiny CLIP, random RPN backbone, detectors from the RPN."""
    return {
        "dataset": "custom",
        "custom": {**paths, "novel": novel},
        "clip": {"model": TINY, "weights": "random"},
        "experiments": ["oadp_demo"],
        "prompts": {"kinds": ["vild", "ml"]},
        "proposals": {"backbone_init": "random"},
        "train": {"init": "proposals"},
        **more,
    }


def test_a_custom_dataset_plans_its_own_annotation_jobs(snakemake_bin, tmp_path):
    config = custom_config(write_custom_dataset(tmp_path / "data"), ["étoile rouge"])
    proc = snakemake(snakemake_bin, tmp_path, config, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "annotations_custom" in out and "rule demo_data" not in out and "rule teacher" not in out
    assert "results/annotations/custom/val.all.min.json" in out
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unknown novel name", "not among the file's categories: ['etoile Rouge'] ('etoile Rouge': closest"),
        ("duplicate category name", "duplicate category name(s) ['GREEN STAR']"),
        ("missing image", "1 image file(s) missing, first: image 8"),
        ("box outside its image", "annotation 2 has a box [40, 5, 30, 30]"),
        ("empty val split", "the val split is empty"),
        ("base and novel overlap", "split is not disjoint: ['étoile rouge']"),
        ("names differing by case or spacing", "'Red Circle' and 'red  circle' differ only by case or spacing"),
    ],
)
def test_bad_custom_input_is_refused_before_any_job(snakemake_bin, tmp_path, kind, message):
    data, novel, base = _broken(kind)
    paths = write_custom_dataset(tmp_path / "data", data)
    if kind == "missing image":
        (Path(paths["val_images"]) / "v/x.jpg").unlink()
    config = custom_config(paths, novel)
    config["custom"]["base"] = base
    proc = snakemake(snakemake_bin, tmp_path, config, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid custom dataset (config key 'custom')" in out and message in out, out[-3000:]
    assert not (tmp_path / "results").exists()


def test_paths_with_spaces_reach_every_command_whole(snakemake_bin, tmp_path):
    """A working directory and a dataset folder with spaces in their names: every planned command's path arguments
    survive the shell (one argument each), and the annotation jobs run."""
    workdir = tmp_path / "my runs" / "first try"
    workdir.mkdir(parents=True)
    paths = write_custom_dataset(tmp_path / "my data")
    proc = snakemake(snakemake_bin, workdir, custom_config(paths, ["étoile rouge"]), "-n", "-p")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith("Shell command: ") and "python -m pipeline" in line]
    commands = [shlex.split(line.removeprefix("Shell command: ")) for line in lines]
    images = [cmd[cmd.index("--images") + 1] for cmd in commands if "--images" in cmd]
    assert len(images) >= 4 and set(images) == {paths["train_images"], paths["val_images"]}, images
    annotations = [cmd[cmd.index("--annotations") + 1] for cmd in commands if "--annotations" in cmd]
    assert any(a == paths["train_annotations"] for a in annotations), annotations
    target = "results/annotations/custom/val.all.min.json"
    proc = subprocess.run(
        [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), "--cores", "1", target],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert json.loads((workdir / target).read_text())["images"]


def test_custom_keys_are_required(snakemake_bin, tmp_path):
    paths = write_custom_dataset(tmp_path / "data")
    config = custom_config(paths, ["étoile rouge"])
    del config["custom"]["novel"], config["custom"]["val_images"]
    proc = snakemake(snakemake_bin, tmp_path, config, "-n")
    assert proc.returncode != 0
    assert "config key 'custom.val_images' is required for dataset 'custom'" in proc.stdout + proc.stderr


CLASSES = ["red circle", "blue square", "green star", "red star"]


@pytest.mark.slow
def test_a_generated_custom_dataset_runs_end_to_end(snakemake_bin, tmp_path):
    from pipeline import demo_data
    from pipeline.demo_data.custom import custom_name

    demo_data.main(
        ["--out-dir", str(tmp_path / "generated"), "--classes", *CLASSES, "--num-train", "6", "--num-val", "4"]
        + ["--sizes", "256x224", "--objects", "2", "3", "--crowd-prob", "0.5", "--seed", "1"]
        + ["--custom", str(tmp_path / "data")]
    )
    names = [custom_name(n, k) for k, n in enumerate(CLASSES)]  # Red Circle, blue-square, GREEN STAR, étoile rouge
    paths = {f"{s}_annotations": f"data/annotations/{s}.json" for s in ("train", "val")}
    paths.update({f"{s}_images": f"data/images/{s}" for s in ("train", "val")})
    config = custom_config(
        paths,
        [names[3]],
        proposals={
            "backbone_init": "random",
            "depth": 18,
            "scale": 256,
            "iters": 3,
            "max_per_img": 20,
            "effective_batch": "actual",  # 3 iterations of 2 images (the schema's 16 would accumulate 8 each)
        },
        oake={"shards": 1},
        train={
            "iters": 3,
            "init": "proposals",
            "options": {"model.train_cfg.rpn_proposal.max_per_img": 50, "model.train_cfg.rcnn.sampler.num": 32},
        },
    )
    config["prompts"]["ml_epochs"] = 1
    proc = snakemake(snakemake_bin, tmp_path, config, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    results = tmp_path / "results"
    ann = results / "annotations/custom"
    train_all = json.loads((ann / "train.all.json").read_text())
    # bases in id order (blue-square 10, GREEN STAR 31, Red Circle 1000007), then the novel class
    assert [(c["id"], c["name"]) for c in train_all["categories"]] == list(enumerate([*names[1:3], names[0], names[3]]))
    assert all(a["iscrowd"] == 0 and a["area"] > 0 for a in train_all["annotations"])
    assert all(a["category_id"] < 3 for a in json.loads((ann / "train.base.json").read_text())["annotations"])
    val_all = json.loads((ann / "val.all.json").read_text())
    assert any(a["iscrowd"] for a in val_all["annotations"]) and "/" in val_all["images"][0]["file_name"]
    verify = json.loads((results / "oake/custom/objects/val/verify.json").read_text())
    assert verify["bad"] == {}
    metrics = json.loads((results / "evaluate/oadp_demo/metrics.json").read_text())
    for key in ("novel_ap50", "base_ap50", "all_ap50", "novel_ap", "base_ap", "all_ap"):
        assert metrics[key] is None or 0 <= metrics[key] <= 100
    assert metrics["coco"]["num_base"] == 3 and metrics["coco"]["num_categories"] == 4
    per_class = json.loads((results / "evaluate/oadp_demo/per_class_ap.json").read_text())
    assert {(r["name"], r["split"]) for r in per_class} == {
        (names[1], "base"),
        (names[2], "base"),
        (names[0], "base"),
        (names[3], "novel"),
    }
    assert "| oadp_demo |" in (results / "report/summary.md").read_text()
    proc = snakemake(snakemake_bin, tmp_path, config, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
