"""Profiles and scale: the SLURM profile's resources, the local GPU limit, and full-size planning."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks import dag

REPO = Path(__file__).resolve().parents[1]
SLURM_PROFILE = REPO / "workflow/profiles/slurm"
LOCAL_GPU = REPO / "workflow/rules/local_gpu.smk"


def workflow_rules() -> set[str]:
    names = set()
    for smk in [REPO / "Snakefile", *(REPO / "workflow/rules").glob("*.smk")]:
        names.update(re.findall(r"^\s*(?:use )?rule (\w+)(?::| with:)", smk.read_text(), flags=re.M))
        names.update(re.findall(r"^\s*use rule \w+ as (\w+)", smk.read_text(), flags=re.M))
    return names


def planned_resources(output: str) -> dict[str, dict[str, str]]:
    """Rule -> its first job's resources, from the job listing of ``snakemake -n``."""
    found: dict[str, dict[str, str]] = {}
    rule = None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("resources:"):
            items = line.strip().removeprefix("resources:").split(", ")
            found.setdefault(rule, dict(item.strip().split("=", 1) for item in items))
            rule = None
    return found


def test_slurm_profile_parses_and_scales_with_attempt():
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["retries"] >= 1 and profile["jobs"] >= 1
    assert profile["slurm-status-command"] == "squeue"  # works without SLURM accounting (no sacct)
    assert profile["slurm-requeue"] is True
    # every per-rule entry names a rule of the workflow (a typo would silently do nothing)
    assert set(profile["set-resources"]) <= workflow_rules(), set(profile["set-resources"]) - workflow_rules()
    # memory and runtime grow with the attempt, so a retry after an out-of-memory or timeout kill can succeed
    entries = [profile["default-resources"], *profile["set-resources"].values()]
    for entry in entries:
        for key in ("mem_mb", "runtime"):
            if key in entry:
                first, second = (eval(str(entry[key]), {"attempt": a}) for a in (1, 2))  # noqa: S307
                assert second > first > 0, (key, entry[key])
    assert "mem_mb" in profile["default-resources"] and "runtime" in profile["default-resources"]
    # GPU counts of training jobs come from the config (the job starts torchrun with that many), never from here
    for rule in ("train", "proposals_train"):
        assert "gpu" not in profile["set-resources"].get(rule, {})


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    counts = dag.make_tree(root)
    assert counts == {"coco_train": 118_287, "coco_val": 5_000, "lvis_train": 100_170, "lvis_val": 19_809}
    return root


def preset_shards(preset: str) -> int:
    return yaml.safe_load((REPO / dag.PRESETS[preset]).read_text())["oake"]["shards"]


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["coco", "lvis"])
def test_full_size_dry_run_plans_every_oake_shard(full_tree, tmp_path, preset):
    result = dag.plan(preset, full_tree, tmp_path / "work")
    shards = preset_shards(preset)
    jobs = result["jobs_per_rule"]
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    kinds = schema["properties"]["oake"]["properties"]["kinds"]["default"]  # the presets keep the default
    for kind in ("globals", "blocks", "objects"):
        assert jobs.get(f"oake_{kind}", 0) == (2 * shards if kind in kinds else 0), jobs  # train2017 and val2017
    assert jobs["oake_verify"] == 2 * len(kinds)
    assert jobs[f"annotations_{preset}"] == 2
    assert jobs["proposals_predict"] == 2


@pytest.mark.slow
def test_dry_run_with_the_slurm_profile_shows_resources_per_rule(full_tree, tmp_path):
    train_gpus = tmp_path / "gpus.yaml"
    train_gpus.write_text("train: {gpus: 4}\n")
    result = dag.plan(
        "coco",
        full_tree,
        tmp_path / "work",
        "--profile",
        str(SLURM_PROFILE),
        configfiles=[train_gpus],
    )
    out = result["output"]
    assert "Using profile" in out and "slurm" in out
    res = planned_resources(out)
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    for rule in ("oake_globals", "oake_blocks", "oake_objects", "proposals_predict", "prompts_vild"):
        expected = {**profile["default-resources"], **profile["set-resources"][rule]}
        assert res[rule]["gpu"] == "1", (rule, res[rule])
        for key in ("mem_mb", "runtime", "cpus_per_task"):
            assert res[rule][key] == str(eval(str(expected[key]), {"attempt": 1})), (rule, key)  # noqa: S307
    # training asks for the configured GPUs (not capped: a cluster run has no local GPU limit)
    assert res["train"]["gpu"] == "4" and res["train"]["cpus_per_task"] == "16"
    # CPU rules: no GPU, the default or their own memory
    assert "gpu" not in res["oake_verify"] and res["oake_verify"]["mem_mb"] == "8000"
    assert "gpu" not in res["annotations_coco"] and res["annotations_coco"]["mem_mb"] == "16000"
    assert res["proposals_recall"]["mem_mb"] == "4000" and res["proposals_recall"]["runtime"] == "60"


FAKE_GPU_SNAKEFILE = """
include: "{local_gpu}"

rule all:
    input: expand("gpu{{i}}.txt", i=range(4)), expand("cpu{{i}}.txt", i=range(2)), "train.txt"

rule gpu_job:
    output: "gpu{{i}}.txt"
    resources: gpu=1
    shell: "echo $(date +%s.%N) > {{output}}; sleep 1.5; echo $(date +%s.%N) >> {{output}}"

rule cpu_job:
    output: "cpu{{i}}.txt"
    shell: "echo $(date +%s.%N) > {{output}}; sleep 1.5; echo $(date +%s.%N) >> {{output}}"

rule train:
    output: "train.txt"
    resources: gpu=2
    shell: "echo $(date +%s.%N) > {{output}}; sleep 0.5; echo $(date +%s.%N) >> {{output}}"
"""


def _run_fake(snakemake_bin: str, workdir: Path, visible: str | None, *args: str) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Snakefile").write_text(FAKE_GPU_SNAKEFILE.format(local_gpu=LOCAL_GPU))
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    proc = subprocess.run([snakemake_bin, *args], cwd=workdir, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _max_overlap(files: list[Path]) -> int:
    """Most jobs running at the same moment, from the start and end times each job wrote."""
    events = []
    for f in files:
        start, end = (float(x) for x in f.read_text().split())
        events += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(events):  # an end sorts before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_local_run_starts_one_gpu_job_at_a_time(snakemake_bin, tmp_path):
    _run_fake(snakemake_bin, tmp_path / "one", "0", "--cores", "4")
    gpu = sorted((tmp_path / "one").glob("gpu*.txt")) + [tmp_path / "one/train.txt"]
    assert _max_overlap(gpu) == 1
    # the limit is on GPU jobs only: CPU jobs ran beside them
    assert _max_overlap(gpu + sorted((tmp_path / "one").glob("cpu*.txt"))) > 1


@pytest.mark.slow
def test_local_gpu_limit_is_raised_with_resources(snakemake_bin, tmp_path):
    _run_fake(snakemake_bin, tmp_path / "two", "0", "--cores", "4", "--resources", "gpu=2")
    gpu = sorted((tmp_path / "two").glob("gpu*.txt")) + [tmp_path / "two/train.txt"]
    assert _max_overlap(gpu) == 2


@pytest.mark.slow
def test_no_gpu_limit_without_a_gpu_or_on_a_cluster(snakemake_bin, tmp_path):
    # no visible GPU: every job runs on the CPU, nothing to share
    _run_fake(snakemake_bin, tmp_path / "cpu", "", "--cores", "4")
    assert _max_overlap(sorted((tmp_path / "cpu").glob("gpu*.txt"))) > 1
    # a cluster executor (--jobs): the training job keeps its 2 GPUs, no global limit is set
    proc = _run_fake(snakemake_bin, tmp_path / "cluster", "0", "-n", "--executor", "slurm", "--jobs", "10")
    assert planned_resources(proc.stdout + proc.stderr)["train"]["gpu"] == "2"
    proc = _run_fake(snakemake_bin, tmp_path / "local", "0", "-n", "--cores", "4")
    assert planned_resources(proc.stdout + proc.stderr)["train"]["gpu"] == "1"


def test_the_workflow_applies_the_local_gpu_limit(snakemake_bin, tmp_path):
    """The project's Snakefile includes local_gpu.smk: a 2-GPU training is planned with the local limit of 1."""
    gpus = tmp_path / "gpus.yaml"
    gpus.write_text("train: {gpus: 2, batch_size: 1}\n")  # 2 x 1 = the demo configs' batch
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    base = [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n"]
    base += ["--configfile", str(tmp_path / "config.yaml"), str(gpus), "--cores", "2"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
    for extra, expected in (([], "1"), (["--resources", "gpu=2"], "2")):
        proc = subprocess.run(base + extra, capture_output=True, text=True, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        train = planned_resources(proc.stdout + proc.stderr)["train"]
        assert train.get("gpu") == expected, (
            f'train planned with {train}: the Snakefile must `include: "workflow/rules/local_gpu.smk"`'
        )


def test_training_work_dirs_are_params_not_outputs(snakemake_bin, tmp_path):
    """A retried or requeued training job resumes from the checkpoints in its work dir: the work dir is a param,
    its only output is final.pth (Snakemake removes a failed job's outputs, never the folder around them)."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    cmd = [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path), "-n", "-p"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = []  # (rule, outputs, shell command)
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout + proc.stderr):
        m = re.match(r"(?:local)?rule (\w+):", block)
        outputs = re.search(r"^\s+output: (.+)$", block, flags=re.M)
        shell = re.search(r"^Shell command: (.+)$", block, flags=re.M)
        if m and outputs:
            jobs.append((m.group(1), outputs.group(1).split(", "), shell.group(1) if shell else ""))
    work_dirs = set()
    for rule, outputs, shell in jobs:
        if rule in ("train", "proposals_train"):
            assert [Path(o).name for o in outputs] == ["final.pth"], (rule, outputs)
            work_dir = str(Path(outputs[0]).parent)
            assert f"--work-dir {work_dir} " in shell, shell
            work_dirs.add(work_dir)
    assert len(work_dirs) == 1 + len(yaml.safe_load((REPO / "config.yaml").read_text())["experiments"])
    for rule, outputs, _ in jobs:  # no other job writes into a work dir
        for out in outputs:
            assert rule in ("train", "proposals_train") or not any(out.startswith(d + "/") for d in work_dirs), out
