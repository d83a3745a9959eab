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


def snakemake(snakemake_bin: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)


def assert_one_clean_block(proc: subprocess.CompletedProcess, *lines: str) -> None:
    """Exit status 1, the message's lines, and nothing of a Python or Snakemake traceback."""
    err = proc.stdout + proc.stderr
    assert proc.returncode == 1, err[-3000:]
    assert "Error: invalid configuration (nothing was run):" in err, err[-3000:]
    for line in lines:
        assert line in err, err[-3000:]
    for noise in ("Traceback", 'File "', "in file", "ValueError", "ConfigError", "config.smk"):
        assert noise not in err, (noise, err[-3000:])


@pytest.mark.parametrize(
    ("config", "line"),
    [
        ("trian={iters: 3}", "config key 'trian': unknown key; did you mean 'train'?"),
        ("oake={shard: 3}", "config key 'oake.shard': unknown key; did you mean 'shards'?"),
        ("dataset=cocoo", "config key 'dataset': 'cocoo' is not one of"),
        ("detect={experiment: vild_dem}", "'vild_dem' is not a run of this configuration; did you mean 'vild_demo'?"),
    ],
)
def test_a_config_error_is_one_block_with_the_closest_name(snakemake_bin, tmp_path, config, line):
    assert_one_clean_block(snakemake(snakemake_bin, tmp_path, "-n", "--config", config), line)


def test_misspelt_export_sources_fail_at_plan_time(snakemake_bin, tmp_path):
    (tmp_path / "config.yaml").write_text("export_instructcv: {sources: [gt, vild_dem], split: val}\n")
    assert_one_clean_block(
        snakemake(snakemake_bin, tmp_path, "-n"),
        "config key 'export_instructcv.sources': 'vild_dem' is not a run of this configuration; did you mean "
        "'vild_demo'?",
    )


def test_a_command_in_the_clip_model_is_refused_before_any_job(snakemake_bin, tmp_path):
    """A real run (not -n) asked for the prompts file: the name is refused while the config is read, so no job
    starts and the command inside it never runs."""
    (tmp_path / "config.yaml").write_text(
        'clip: {model: "OADP-Tiny-ViT-32 $(touch PWNED)", weights: random}\n', encoding="utf-8"
    )
    proc = snakemake(snakemake_bin, tmp_path, "--cores", "1", "results/prompts/vild.pth")
    assert_one_clean_block(
        proc, "config key 'clip.model': 'OADP-Tiny-ViT-32 $(touch PWNED)' is not a known CLIP architecture"
    )
    assert not (tmp_path / "PWNED").exists() and not (REPO / "PWNED").exists()
    assert not (tmp_path / "results").exists()
