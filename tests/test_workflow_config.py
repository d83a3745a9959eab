"""The workflow's configuration layers as a user meets them: runs with --directory elsewhere, a working
directory's own config.yaml, presets and nested --config values (job plans only: `snakemake -n`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import dag
from tests.conftest import make_coco, make_lvis, write_json

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def plan(snakemake_bin: str, workdir: Path, *args: str) -> str:
    """``snakemake -n --summary`` run from the repository with ``--directory workdir``: the planned outputs."""
    cmd = [snakemake_bin, "-n", "--summary", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout


def test_a_run_elsewhere_gets_the_project_defaults(snakemake_bin, tmp_path):
    out = plan(snakemake_bin, tmp_path)  # no config.yaml in the working directory
    assert "results/demo_data/annotations/instances_train.json" in out
    for experiment in ("baseline_demo", "vild_demo", "oadp_demo"):
        assert f"results/evaluate/{experiment}/metrics.json" in out
    assert "results/teacher/clip.pt" in out  # clip.weights: teacher, from the project's config.yaml


def test_a_config_yaml_in_the_working_directory_overrides_the_defaults(snakemake_bin, tmp_path):
    (tmp_path / "config.yaml").write_text("experiments: [vild_demo]\noake: {shards: 3}\n")
    out = plan(snakemake_bin, tmp_path)
    assert "results/evaluate/vild_demo/metrics.json" in out
    assert "results/evaluate/oadp_demo/metrics.json" not in out
    assert "results/oake/demo/objects/train/shard-002.h5" in out


def test_nested_command_line_values_are_typed(snakemake_bin, tmp_path):
    out = plan(snakemake_bin, tmp_path, "--config", "oake={shards: 3}", "dry_run=true")
    assert "results/oake/demo/globals/val/shard-002.h5" in out


def test_a_preset_runs_elsewhere_without_the_demo(snakemake_bin, tmp_path, coco_categories, lvis_categories):
    data = tmp_path / "data"
    for split in ("train", "val"):
        write_json(data / "coco/annotations" / f"instances_{split}2017.json", make_coco(coco_categories, 2))
        write_json(data / "lvis_v1/annotations" / f"lvis_v1_{split}.json", make_lvis(lvis_categories, 2))
        (data / "coco" / f"{split}2017").mkdir(parents=True)
    run = tmp_path / "run"
    dag.touch_pretrained(run)
    out = plan(
        snakemake_bin,
        run,
        "--configfile",
        str(REPO / "workflow/presets/ov_coco.yaml"),
        "--config",
        f"data_root={data}",
    )
    assert "results/evaluate/oadp_ov_coco/metrics.json" in out
    assert "demo_data" not in out and "results/teacher" not in out
