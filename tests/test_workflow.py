"""The Snakemake workflow, run as a subprocess in a temporary working directory."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks import dag
from pipeline.core import vocab
from tests.conftest import check_final, check_metrics, make_coco, make_lvis, write_json

REPO = Path(__file__).resolve().parents[1]
SMALL_DEMO = {
    "seed": 1,
    "num_train": 5,
    "num_val": 3,
    "sizes": ["256x224"],
    "objects": [2, 3],
    "crowd_prob": 0.5,
    "classes": ["red circle", "blue square", "green star", "red square", "blue circle"],
    "base": ["red circle", "blue square", "green star"],
    "novel": ["red square", "blue circle"],
}
# the whole DAG's demo: seed 4 draws a non-crowd box of every class into the 3 val images, and base classes of both
# LVIS frequencies f and c, so that every metric (novel, base, rare, common, frequent) is defined
FULL_DEMO = {**SMALL_DEMO, "seed": 4}


def snakemake(
    snakemake_bin: str, workdir: Path, *args: str, check: bool = True, demo: dict | None = None
) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` with the repository's config.yaml there (``demo`` replaces its demo part and
    shortens the teacher to 30 steps, the RPN and detector trainings to 3 iterations).

    ``configfile:`` paths are relative to the working directory, as in a user's project folder.
    """
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    if demo is not None:
        config["demo"] = {"captions_per_class": 1, "caption_test_per_class": 2, **demo}
        config["teacher"] = {**config.get("teacher", {}), "steps": 30}
        config["proposals"] = {**config.get("proposals", {}), "iters": 3, "max_per_img": 20}
        config["train"] = {
            **config.get("train", {}),
            "iters": 3,
            "options": {"model.train_cfg.rpn_proposal.max_per_img": 50, "model.train_cfg.rcnn.sampler.num": 32},
        }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def test_dry_run_default_config(snakemake_bin, tmp_path):
    proc = snakemake(snakemake_bin, tmp_path, "-n", "--quiet", "rules")
    out = proc.stdout + proc.stderr
    for rule in ("demo_data", "annotations_demo", "annotations_demo_lvis", "annotations_min", "all"):
        assert rule in out


def test_lint_is_clean(snakemake_bin, tmp_path):
    proc = snakemake(snakemake_bin, tmp_path, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("override", "key", "message"),
    [
        ("dataset=imagenet", "dataset", "is not one of"),
        ("dry_run=maybe", "dry_run", "is not of type 'boolean'"),
        ("colour=red", "colour", "unknown key"),
        ({**SMALL_DEMO, "seed": "x"}, "demo.seed", "is not of type 'integer'"),
        ({**SMALL_DEMO, "num_val": 0}, "demo.num_val", "is less than the minimum of 1"),
        ({**SMALL_DEMO, "colours": 3}, "demo.colours", "unknown key"),
    ],
)
def test_bad_config_fails_at_parse_time_naming_the_key(snakemake_bin, tmp_path, override, key, message):
    if isinstance(override, dict):
        proc = snakemake(snakemake_bin, tmp_path, "-n", demo=override, check=False)
    else:
        proc = snakemake(snakemake_bin, tmp_path, "-n", "--config", override, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"config key '{key}'" in err and message in err, err[-2000:]


def test_preset_without_data_root_is_refused(snakemake_bin, tmp_path):
    proc = snakemake(
        snakemake_bin,
        tmp_path,
        "-n",
        "--configfile",
        str(REPO / "workflow/presets/ov_coco.yaml"),
        "--config",
        "data_root=",
        check=False,
    )
    assert proc.returncode != 0 and "config key 'data_root' is required" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_demo_data_and_annotations_run(snakemake_bin, tmp_path):
    snakemake(snakemake_bin, tmp_path, "--cores", "2", demo=FULL_DEMO)
    ann = tmp_path / "results" / "annotations" / "demo"
    train_all = json.loads((ann / "train.all.json").read_text())
    train_base = json.loads((ann / "train.base.json").read_text())
    assert [c["name"] for c in train_all["categories"]] == [
        "red circle",
        "blue square",
        "green star",
        "red square",
        "blue circle",
    ]
    assert all(a["category_id"] < 3 for a in train_base["annotations"])
    assert len(list((tmp_path / "results/demo_data/images/train").glob("*.jpg"))) == 5
    val_min = json.loads((ann / "val.all.min.json").read_text())
    assert {im["id"] for im in val_min["images"]} == {a["image_id"] for a in val_min["annotations"]}
    lvis_all = json.loads((ann / "lvis_val.all.json").read_text())
    assert [c["name"] for c in lvis_all["categories"]][3:] == ["red square", "blue circle"]  # rare = novel
    for name in ("lvis_train.norare.json", "lvis_train_cat_info.json", "lvis_train.base.json"):
        assert (ann / name).stat().st_size > 0
    demo_log = (tmp_path / "results/logs/demo_data/demo_data.log").read_text()
    assert demo_log.count("demo train") == 1 and "drawing train images: 5/5 img (100%)" in demo_log  # one handler
    for kind in ("globals", "blocks"):
        for folder in ("train", "val"):
            report = json.loads((tmp_path / f"results/oake/demo/{kind}/{folder}/verify.json").read_text())
            assert len(report["checked"]) == 2 and report["bad"] == {}
    import torch

    for name in ("vild", "ml"):
        obj = torch.load(tmp_path / f"results/prompts/{name}.pth", weights_only=True)
        assert obj["names"] and obj["embeddings"].shape[0] == len(obj["names"]) == 5
    report = json.loads((tmp_path / "results/proposals/demo/recall.json").read_text())
    assert report["novel"]["boxes"] > 0 and 0 <= report["novel"]["AR@100"] <= 100
    assert json.loads((tmp_path / "results/oake/demo/objects/val/verify.json").read_text())["bad"] == {}
    # the CLIP teacher: trained on captions of every class, its checkpoint read by every CLIP stage
    zeroshot = json.loads((tmp_path / "results/teacher/zeroshot.json").read_text())
    assert zeroshot["training"]["steps"] == 30 and zeroshot["classes"] == SMALL_DEMO["classes"]
    assert zeroshot["novel"] == SMALL_DEMO["novel"] and zeroshot["zero_shot"]["crops"]["vild"]["n_novel"] == 4
    checkpoint = tmp_path / "results/teacher/clip.pt"
    assert not (checkpoint.stat().st_mode & 0o222)  # protected: no write bit
    assert torch.load(tmp_path / "results/prompts/vild.pth", weights_only=True)["meta"]["clip_weights"] == (
        "results/teacher/clip.pt"
    )
    captions = json.loads((tmp_path / "results/demo_data/captions/captions_train.json").read_text())
    assert {c["category"] for c in captions} == set(SMALL_DEMO["classes"])  # novel names reach the teacher's data
    for experiment in ("baseline_demo", "vild_demo", "oadp_demo"):
        check_final(tmp_path / f"results/train/{experiment}/final.pth", experiment)
        assert isinstance(json.loads((tmp_path / f"results/evaluate/{experiment}/detections.json").read_text()), list)
        metrics = json.loads((tmp_path / f"results/evaluate/{experiment}/metrics.json").read_text())
        contract = ("novel_ap50", "base_ap50", "all_ap50", "novel_ap", "base_ap", "all_ap", "ap", "apr", "apc", "apf")
        check_metrics(metrics, contract, experiment)  # the val split has boxes of every class and frequency
    summary = (tmp_path / "results/report/summary.md").read_text()
    assert "| vild_demo |" in summary and "| oadp_demo |" in summary and "| baseline_demo |" in summary
    assert "## CLIP teacher" in summary and "- vild_demo: novel AP50" in summary
    assert (tmp_path / "results/report/pr_curves.png").stat().st_size > 0
    # the DAG is complete: a second dry run has nothing to do
    proc = snakemake(snakemake_bin, tmp_path, "-n", demo=FULL_DEMO)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_presets_on_a_generated_reference_tree(snakemake_bin, tmp_path, coco_categories, lvis_categories):
    root = tmp_path / "data"
    for split, n in (("train", 12), ("val", 8)):
        write_json(root / f"coco/annotations/instances_{split}2017.json", make_coco(coco_categories, n, seed=n))
        write_json(root / f"lvis_v1/annotations/lvis_v1_{split}.json", make_lvis(lvis_categories, n, seed=n))
    dag.touch_pretrained(tmp_path)  # the presets' pretrained files are checked at parse time, whatever the targets
    # the annotation targets of each preset (the tree has annotation files but no images)
    targets = {
        "ov_coco": ["results/annotations/coco/instances_val2017.65.min.json"]
        + [f"results/annotations/coco/instances_{s}2017.{k}.json" for s in ("train", "val") for k in (48, 65)],
        "ov_lvis": [
            "results/annotations/lvis/lvis_v1_train.norare.json",
            "results/annotations/lvis/lvis_v1_train_cat_info.json",
        ]
        + [f"results/annotations/lvis/lvis_v1_{s}.{k}.json" for s in ("train", "val") for k in (866, 1203)],
    }
    for preset, files in targets.items():
        snakemake(
            snakemake_bin,
            tmp_path,
            "--cores",
            "2",
            "--configfile",
            str(REPO / f"workflow/presets/{preset}.yaml"),
            "--config",
            f"data_root={root}",
            "--",
            *files,
        )
        assert not (tmp_path / "results/demo_data").exists()  # no demo job on real-data presets
    coco = tmp_path / "results/annotations/coco"
    assert sorted(p.name for p in coco.glob("*.json")) == [
        "instances_train2017.48.json",
        "instances_train2017.65.json",
        "instances_val2017.48.json",
        "instances_val2017.65.json",
        "instances_val2017.65.min.json",
    ]
    names = [c["name"] for c in json.loads((coco / "instances_val2017.48.json").read_text())["categories"]]
    assert names == list(vocab.COCO_BASE + vocab.COCO_NOVEL)
    lvis = tmp_path / "results/annotations/lvis"
    assert sorted(p.name for p in lvis.glob("*.json")) == [
        "lvis_v1_train.1203.json",
        "lvis_v1_train.866.json",
        "lvis_v1_train.norare.json",
        "lvis_v1_train_cat_info.json",
        "lvis_v1_val.1203.json",
        "lvis_v1_val.866.json",
    ]


def test_dry_run_config_switch_reaches_every_stage(snakemake_bin, tmp_path):
    """`--config dry_run=true` (YAML's spelling, as the README writes it) shrinks the teacher and every stage that
    reads images, trains or builds an ensemble; the evaluation marks its metrics."""
    proc = snakemake(snakemake_bin, tmp_path, "-n", "-p", "--config", "dry_run=true")
    out = proc.stdout + proc.stderr
    teacher = [line for line in out.splitlines() if "python -m pipeline.teacher" in line]
    assert len(teacher) == 1 and "--dry-run" in teacher[0]

    def commands(*words: str) -> list[str]:
        return [line for line in out.splitlines() if all(w in line for w in words)]

    expected = {  # command words -> number of jobs (3 experiments, 2 splits, 3 kinds x 2 splits x 2 shards)
        ("python -m pipeline.train", " fit "): 3,
        ("python -m pipeline.train", " predict "): 3,
        ("python -m pipeline.evaluate",): 3,
        ("python -m pipeline.prompts", " vild "): 1,
        ("python -m pipeline.prompts", " ml "): 1,
        ("python -m pipeline.proposals", " train "): 1,
        ("python -m pipeline.proposals", " predict "): 2,
        ("python -m pipeline.proposals", " recall "): 1,
        ("python -m pipeline.oake.globals",): 4,
        ("python -m pipeline.oake.blocks",): 4,
        ("python -m pipeline.oake.objects",): 4,
        ("python -m pipeline.oake.verify",): 6,
    }
    for words, n in expected.items():
        lines = commands(*words)
        assert len(lines) == n and all("--dry-run" in line for line in lines), (words, lines)
    plain = snakemake(snakemake_bin, tmp_path, "-n", "-p")
    assert "python -m pipeline.evaluate" in plain.stdout + plain.stderr
    assert "--dry-run" not in plain.stdout + plain.stderr


def test_scene_settings_do_not_rerun_the_captions_or_the_teacher(snakemake_bin, tmp_path):
    """The captioned crops depend on the classes and the seed only: more scenes keep them (and so the teacher)."""
    target = "results/demo_data/captions/captions_test.json"
    demo = {**SMALL_DEMO, "caption_test_per_class": 2}
    snakemake(snakemake_bin, tmp_path, "--cores", "1", target, demo=demo)
    out = snakemake(snakemake_bin, tmp_path, "-n", target, demo={**demo, "num_train": 9}).stdout
    assert "Nothing to be done" in out, out[-2000:]
    out = snakemake(snakemake_bin, tmp_path, "-n", target, demo={**demo, "caption_test_per_class": 3}).stdout
    assert "rule demo_captions" in out and "Params have changed" in out, out[-2000:]


def test_demo_long_preset_doubles_every_training(snakemake_bin, tmp_path):
    proc = snakemake(snakemake_bin, tmp_path, "-n", "-p", "--configfile", str(REPO / "workflow/presets/demo_long.yaml"))
    trains = [line for line in (proc.stdout + proc.stderr).splitlines() if "python -m pipeline.train" in line]
    trains = [line for line in trains if " fit " in line]
    assert len(trains) == 3 and all("--iters 600" in line for line in trains), trains
    plain = snakemake(snakemake_bin, tmp_path, "-n", "-p")
    assert "--iters" not in "".join(x for x in (plain.stdout + plain.stderr).splitlines() if " fit " in x)


@pytest.mark.parametrize("setting", ["on_bad_image: skip", "oake: {on_bad_image: skip}"], ids=["key", "deprecated"])
def test_on_bad_image_reaches_every_stage_that_reads_images(snakemake_bin, tmp_path, setting):
    """``on_bad_image`` is the one bad-image policy: proposals predict, the OAKE extractors and train predict all
    get it; the deprecated ``oake.on_bad_image`` still sets it, with a warning."""
    skip = tmp_path / "skip.yaml"
    skip.write_text(setting + "\n")
    proc = snakemake(snakemake_bin, tmp_path, "-n", "-p", "--configfile", str(skip))
    lines = (proc.stdout + proc.stderr).splitlines()
    assert ("config key 'oake.on_bad_image' is deprecated" in proc.stdout + proc.stderr) == ("oake" in setting)
    readers = {
        "proposals predict": [x for x in lines if "python -m pipeline.proposals" in x and " predict " in x],
        "oake": [x for x in lines if "python -m pipeline.oake." in x and "pipeline.oake.verify" not in x],
        "train predict": [x for x in lines if "python -m pipeline.train" in x and " predict " in x],
    }
    for stage, commands in readers.items():
        assert commands and all("--on-bad-image skip" in x for x in commands), (stage, commands)


SHIPPED_EXPERIMENTS = sorted(
    p.stem for p in (REPO / "pipeline/models/detector/configs").glob("*.py") if not p.stem.startswith("_")
)


def test_unknown_experiment_fails_at_parse_time_listing_the_valid_names(snakemake_bin, tmp_path):
    proc = snakemake(snakemake_bin, tmp_path, "-n", "--config", "experiments=[vild_nonexistent]", check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key 'experiments': unknown experiment 'vild_nonexistent'" in err, err[-2000:]
    assert "vild_demo" in SHIPPED_EXPERIMENTS and str(SHIPPED_EXPERIMENTS) in err, err[-2000:]
    proc = snakemake(snakemake_bin, tmp_path, "-n", "--config", "experiments=[vild_dem]", check=False)
    assert "unknown experiment 'vild_dem'; did you mean 'vild_demo'?" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("change", "key", "names"),
    [
        ({"base": ["red circle", "pink hexagon"]}, "demo.base", "['pink hexagon']"),
        ({"novel": ["red square", "blue cirle"]}, "demo.novel", "['blue cirle']"),
        ({"novel": ["red square", "green star"]}, "demo.novel", "['green star']"),  # also a base class
    ],
    ids=["unknown base", "unknown novel", "base and novel"],
)
def test_demo_split_names_outside_the_classes_fail_at_parse_time(snakemake_bin, tmp_path, change, key, names):
    proc = snakemake(snakemake_bin, tmp_path, "-n", demo={**SMALL_DEMO, **change}, check=False)
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"config key '{key}'" in err and names in err, err[-2000:]
    if names != "['green star']":
        assert str(SMALL_DEMO["classes"]) in err, err[-2000:]  # the valid names


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes(range(256)) * 4, "not a UTF-8 text file"),
        ("dataset: demo\ncomment: caf\u00e9\n".encode("latin-1"), "not a UTF-8 text file"),
        (b"- just\n- a list\n", "needs config keys at top level"),
    ],
    ids=["binary", "latin-1", "list"],
)
def test_unreadable_config_yaml_is_named(snakemake_bin, tmp_path, content, message):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    proc = subprocess.run(
        [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"config file {config}: {message}" in err, err[-2000:]
    assert "UnicodeDecodeError" not in err and "Traceback" not in err, err[-2000:]


def _train_inputs_from_dry_run(snakemake_bin: str, workdir: Path, target: str) -> list[str]:
    """The input files of the train job of ``target``, as a forced dry run lists them."""
    proc = snakemake(snakemake_bin, workdir, "-n", "--forceall", target)
    lines = (proc.stdout + proc.stderr).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("rule train:"))
    block = lines[start : lines.index("", start) if "" in lines[start:] else None]
    (inputs,) = [line.split("input:", 1)[1] for line in block if line.strip().startswith("input:")]
    return [p.strip() for p in inputs.split(",")]


def test_train_runner_log_of_every_attempt_is_kept(snakemake_bin, tmp_path):
    """Snakemake deletes a declared log before each attempt; the runner output of earlier attempts stays in
    ``{experiment}.runner.log.history``. Empty inputs make the training fail at once."""
    target = "results/train/vild_demo/final.pth"
    for path in _train_inputs_from_dry_run(snakemake_bin, tmp_path, target):
        path = tmp_path / path  # an absolute path (the detector configs) stays as it is
        if path.exists():
            continue
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:  # the image folder
            path.mkdir(parents=True, exist_ok=True)
    runner = tmp_path / "results/logs/train/vild_demo.runner.log"
    history = Path(f"{runner}.history")
    for attempt in (1, 2):
        proc = snakemake(snakemake_bin, tmp_path, target, "--cores", "1", "--allowed-rules", "train", check=False)
        assert proc.returncode != 0, "empty inputs must fail the training"
        assert runner.exists() and runner.read_text().strip(), proc.stderr[-2000:]
        assert history.read_text().count("train vild_demo ====") == attempt
    assert history.read_text().count(runner.read_text()) >= 1  # the latest attempt is in the history too
    assert len(history.read_text()) > len(runner.read_text())  # and the first one still is


@pytest.mark.slow
def test_a_finished_training_is_not_planned_again_from_another_spelling_or_place(snakemake_bin, tmp_path):
    """A project folder holding the workflow, after a run of a detector training: neither ``snakemake -s
    ../Snakefile -d ..`` from its workflow/ folder nor a run of the moved folder plans anything again (no "set of
    input files has changed"). The run is ``--touch`` on empty files: Snakemake records the same provenance."""
    import shutil

    project = tmp_path / "project"
    project.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, project / name)
    for name in ("workflow", "envs", "pipeline"):  # the package too: the workflow imports it while it plans
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    target = "results/train/baseline_demo/final.pth"

    def run(cwd: Path, *args: str) -> str:
        proc = subprocess.run([snakemake_bin, *args, target], capture_output=True, text=True, cwd=cwd)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    for line in run(project, "--summary").splitlines()[1:]:  # every output of the target's jobs
        path = project / line.split("\t")[0]
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:  # an image or crop folder
            path.mkdir(parents=True, exist_ok=True)
    run(project, "--cores", "1", "--touch")
    assert "Nothing to be done" in run(project, "-n")
    out = run(project / "workflow", "-s", "../Snakefile", "-d", "..", "-n")
    assert "Nothing to be done" in out, out[-3000:]
    moved = project.rename(tmp_path / "moved")
    out = run(moved, "-n")
    assert "Nothing to be done" in out, out[-3000:]
