"""Pretrained starts of the presets: every file from elsewhere that a run reads is checked before any job (naming the
config key and the path), the planned jobs read the reference's files at the reference's paths, random starts on
real data are said explicitly and warned about; the presets store the reference's block-0 box, the demo the centre.
Job plans only (`snakemake -n -p` in a temporary working directory)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks import dag
from tests.conftest import make_coco, make_lvis, write_json
from tests.test_config_layers import effective

REPO = Path(__file__).resolve().parents[1]
R50 = "pretrained/torchvision/resnet50-0676ba61.pth"
SOCO = "pretrained/soco/soco_star_mask_rcnn_r50_fpn_400e.pth"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, coco_categories, lvis_categories) -> Path:
    root = tmp_path_factory.mktemp("data")
    for split in ("train", "val"):
        write_json(root / f"coco/annotations/instances_{split}2017.json", make_coco(coco_categories, 4))
        write_json(root / f"lvis_v1/annotations/lvis_v1_{split}.json", make_lvis(lvis_categories, 4))
        (root / f"coco/{split}2017").mkdir(parents=True)
    return root


def plan(snakemake_bin: str, workdir: Path, preset: str, *config: str) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [snakemake_bin, "-n", "-p", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(REPO / f"workflow/presets/{preset}.yaml"), "--config", *config]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def commands(out: str, *words: str) -> list[str]:
    return [line for line in out.splitlines() if all(w in line for w in words)]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ov_coco", "ov_lvis"])
def test_a_preset_without_its_pretrained_files_stops_before_any_job(snakemake_bin, tmp_path, data_root, preset):
    proc = plan(snakemake_bin, tmp_path, preset, f"data_root={data_root}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Job stats" not in out
    assert f"relative to the working directory {tmp_path}" in out
    missing = {
        "clip.weights": "pretrained/clip/ViT-B-32.pt",
        "proposals.backbone_init": R50,
        "train.load_from": SOCO,
    }
    if preset == "ov_lvis":
        missing["prompts.detpro"] = "pretrained/detpro/iou_neg5_ens.pth"
    for key, path in missing.items():
        assert f"config key '{key}': {path}: no such file" in out, (key, out[-3000:])
    assert "soco_star_mask_rcnn_r50_fpn_400e.pth (the reference README: Baidu Netdisk or Google Drive" in out

    dag.touch_pretrained(tmp_path)  # any bytes: planning never reads them
    proc = plan(snakemake_bin, tmp_path, preset, f"data_root={data_root}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    (rpn,) = commands(out, "python -m pipeline.proposals", " train ")
    assert f"--backbone-init torchvision:{R50}" in rpn
    assert "--epochs 12 " in rpn and "--steps 8 11 " in rpn and "--lr 0.02 --lr-batch 16" in rpn
    fits = commands(out, "python -m pipeline.train", " fit ")
    assert fits and all(f"load_from={SOCO}" in line and "--backbone" not in line for line in fits)
    blocks = commands(out, "python -m pipeline.oake.blocks")
    assert blocks and all("--block0-box reference_quirk" in line for line in blocks)
    assert "train from random weights" not in out


@pytest.mark.slow
def test_random_starts_must_be_explicit_and_are_warned(snakemake_bin, tmp_path, data_root):
    dag.touch_pretrained(tmp_path)
    proc = plan(snakemake_bin, tmp_path, "ov_coco", f"data_root={data_root}", "train={load_from: null}")
    assert proc.returncode != 0
    assert "config key 'train.init': pretrained needs train.load_from or train.backbone" in proc.stdout + proc.stderr
    proc = plan(
        snakemake_bin,
        tmp_path,
        "ov_coco",
        f"data_root={data_root}",
        "train={init: random}",
        "proposals={backbone_init: random}",
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "config key 'train.init': random: the detectors of dataset 'coco' train from random weights" in out
    assert "config key 'proposals.backbone_init': random: the RPN of dataset 'coco' trains from random" in out
    assert all("load_from" not in line for line in commands(out, "python -m pipeline.train", " fit "))
    (rpn,) = commands(out, "python -m pipeline.proposals", " train ")
    assert "--backbone-init random " in rpn
    # an ImageNet backbone for the detectors instead of SoCo: an input, passed as --backbone
    proc = plan(
        snakemake_bin, tmp_path, "ov_coco", f"data_root={data_root}", f"train={{load_from: null, backbone: {R50}}}"
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    fits = commands(out, "python -m pipeline.train", " fit ")
    assert fits and all(f"--backbone {R50}" in line and "load_from" not in line for line in fits)


def test_the_presets_store_the_references_block0_box_and_the_demo_the_centre():
    for preset in ("ov_coco", "ov_lvis"):
        cfg = effective(yaml.safe_load((REPO / f"workflow/presets/{preset}.yaml").read_text()))
        assert cfg["oake"]["block0_box"] == "reference_quirk"
        assert cfg["train"]["init"] == "pretrained" and cfg["train"]["load_from"] == SOCO
        assert cfg["proposals"]["backbone_init"] == f"torchvision:{R50}"
    demo = effective({})
    assert demo["oake"]["block0_box"] == "centre"
    assert demo["train"]["init"] == "proposals" and demo["proposals"]["backbone_init"] == "random"
