"""The SLURM profile against a real single-node SLURM on this machine (``make test-slurm``).

``tools/slurm/start.sh`` installs Debian's slurm-wlm and munge when missing and starts munged, slurmctld and
slurmd; the demo's cheap stages (demo data and captions, a 30-step CLIP teacher, annotations, the ViLD prompts,
which ask for a GPU) then run through
``snakemake --profile slurm`` and again locally, and the outputs must be equal. Skipped unless
OADP_TEST_SLURM=1 (it installs packages and starts daemons), and skipped with the script's reason where SLURM
cannot be installed or started.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.test_workflow import SMALL_DEMO

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.slurm,
    pytest.mark.skipif(
        os.environ.get("OADP_TEST_SLURM") != "1",
        reason="starts a SLURM cluster on this machine: run `make test-slurm` (OADP_TEST_SLURM=1)",
    ),
]

TARGETS = [
    *(
        f"results/annotations/demo/{p}{s}.{v}.json"
        for p in ("", "lvis_")
        for s in ("train", "val")
        for v in ("base", "all")
    ),
    "results/annotations/demo/val.all.min.json",
    "results/annotations/demo/lvis_train.norare.json",
    "results/annotations/demo/lvis_train_cat_info.json",
    "results/prompts/vild.pth",
]
RULES = {
    "demo_data",
    "demo_captions",
    "teacher",
    "annotations_demo",
    "annotations_demo_lvis",
    "annotations_demo_lvis_extras",
    "annotations_min",
    "prompts_vild",
}


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    """A running single-node cluster; the environment that reaches it. Stops what it started afterwards."""
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run([str(REPO / "tools/slurm/start.sh"), str(state)], capture_output=True, text=True)
    started = (state / "started").read_text().split("\n") if (state / "started").exists() else []
    pids = [int(line.split()[1]) for line in started if line and line.split()[0] != "link"]
    try:
        if start.returncode == 3:
            pytest.skip(start.stderr.strip().splitlines()[-1])
        assert start.returncode == 0, start.stderr
        yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run([str(REPO / "tools/slurm/stop.sh"), str(state)], check=True)
        time.sleep(0.5)
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        assert not alive, f"daemons still running after stop.sh: {alive}"
        link = Path("/etc/slurm/slurm.conf")
        assert not (link.is_symlink() and os.readlink(link).startswith(str(state))), "stop.sh left the config link"


def _workdir(path: Path) -> Path:
    path.mkdir(parents=True)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["demo"] = {**SMALL_DEMO, "captions_per_class": 1, "caption_test_per_class": 2}
    config["teacher"] = {**config.get("teacher", {}), "steps": 30}  # the CLIP teacher the prompts read, briefly
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def _squeue(env: dict) -> list[tuple[str, str, str, str]]:
    """(job id, comment, state, TRES per job) of every job squeue knows, finished ones included."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-O", "JobID:|,Comment:|,State:|,tres-per-job:"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    return [tuple(field.strip() for field in line.split("|")[:4]) for line in out.splitlines() if line.strip()]


def test_cheap_stages_run_through_sbatch_and_match_a_local_run(slurm_env, snakemake_bin, tmp_path):
    env = {**slurm_env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    # `make profile` makes `--profile slurm` findable (a link in Snakemake's user profile folder)
    subprocess.run(["make", "-s", "profile"], cwd=REPO, env=env, check=True, capture_output=True)
    assert (tmp_path / "xdg/snakemake/slurm/config.yaml").exists()

    before = {job for job, *_ in _squeue(env)}
    slurm_dir = _workdir(tmp_path / "slurm")
    cmd = [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(slurm_dir), "--profile", "slurm"]
    cmd += ["--slurm-init-seconds-before-status-checks", "1", *TARGETS]  # first status check after 1 s, not 40
    seen_running: set[str] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen_running.update(job for job, _, state, _ in _squeue(env) if state in ("PENDING", "RUNNING"))
            stop.wait(0.5)

    poller = threading.Thread(target=poll)
    poller.start()
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    finally:
        stop.set()
        poller.join()
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "Using profile slurm" in out

    # every job went through sbatch: a SLURM log per job, named by its SLURM job id, and squeue knew the ids
    logs = list((slurm_dir / ".snakemake/slurm_logs").rglob("*.log"))
    by_rule = {log.relative_to(slurm_dir / ".snakemake/slurm_logs").parts[0].removeprefix("rule_") for log in logs}
    assert by_rule == RULES, by_rule
    log_ids = {log.stem for log in logs}
    assert len(log_ids) == 10  # demo_data, captions, teacher, 2 + 2 annotation splits, lvis extras, min, vild
    jobs = {job: (comment, state, tres) for job, comment, state, tres in _squeue(env) if job not in before}
    assert set(jobs) == log_ids
    assert seen_running and seen_running <= log_ids  # seen queued or running while snakemake waited
    assert all(state == "COMPLETED" for _, state, _ in jobs.values()), jobs
    # the GPU rule asked SLURM for a GPU (sbatch --gpus=1), the CPU rules did not
    for comment, _, tres in jobs.values():
        assert (tres == "gres:gpu:1") == comment.startswith("rule_prompts_vild"), (comment, tres)
    for log in logs:
        assert "Finished jobid" in log.read_text() or "steps (100%) done" in log.read_text(), log

    local_dir = _workdir(tmp_path / "local")
    start = time.perf_counter()
    local = subprocess.run(
        [snakemake_bin, "--snakefile", str(REPO / "Snakefile"), "--directory", str(local_dir), "--cores", "2"]
        + TARGETS,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    local_seconds = time.perf_counter() - start
    assert local.returncode == 0, (local.stdout + local.stderr)[-5000:]
    compared = 0
    for sub in ("demo_data", "teacher", "annotations", "prompts"):
        for path in sorted((local_dir / "results" / sub).rglob("*")):
            if path.is_file():
                twin = slurm_dir / path.relative_to(local_dir)
                assert twin.is_file(), f"{twin} is missing"
                if path.name == "zeroshot.json":  # holds the training time; the teacher's weights are compared
                    continue
                if path.suffix == ".pth":  # torch's zip records the (temporary) file name and a random id
                    a, b = (torch.load(p, weights_only=True) for p in (path, twin))
                    assert a.keys() == b.keys() and a["names"] == b["names"] and a["meta"] == b["meta"]
                    assert torch.equal(a["embeddings"], b["embeddings"]), f"{twin}: embeddings differ"
                else:
                    assert filecmp.cmp(path, twin, shallow=False), f"{twin} differs from the local run"
                compared += 1
    assert compared >= len(TARGETS) + 4  # the targets plus the demo's images and source annotations
    print(f"\nSLURM run of {len(log_ids)} jobs: {seconds:.1f} s; local run: {local_seconds:.1f} s")


FAKE_TRAINING = r"""
rule all:
    input: "results/train/fake/final.pth"

rule fake_train:
    output: "results/train/fake/final.pth"
    params: work_dir=lambda wildcards, output: os.path.dirname(output[0])
    shell:
        '''
        work={params.work_dir}; start=$(cat $work/checkpoint 2>/dev/null || echo 0)
        echo "job $SLURM_JOB_ID mem_mb={resources.mem_mb} from step $start" >> $work/history
        for step in $(seq $((start + 1)) STEPS); do
            sleep SLEEP; echo $step > $work/checkpoint
            if [ $step = CRASH_AT ] && [ ! -e $work/crashed ]; then touch $work/crashed; exit 1; fi
        done
        cp $work/checkpoint {output}
        '''
"""


def _fake_training(workdir: Path, steps: int, sleep: float, crash_at: int | None) -> Path:
    """A job shaped like rule `train`: checkpoints in its work dir (a param), final.pth the only output; it dies
    once at step ``crash_at``."""
    text = FAKE_TRAINING.replace("STEPS", str(steps)).replace("SLEEP", str(sleep))
    (workdir / "Snakefile").write_text(text.replace("CRASH_AT", str(crash_at or -1)))
    (workdir / "results/train/fake").mkdir(parents=True)
    return workdir / "results/train/fake"


def _profile_run(env: dict, snakemake_bin: str, workdir: Path) -> subprocess.Popen:
    cmd = [snakemake_bin, "--profile", str(REPO / "workflow/profiles/slurm")]  # the profile given as a path
    cmd += ["--slurm-init-seconds-before-status-checks", "1"]
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_retried_training_job_resumes_from_its_work_dir(slurm_env, snakemake_bin, tmp_path):
    """The first job dies after 3 of 6 steps; the profile's retry resubmits it with twice the memory and it goes
    on from step 3."""
    work = _fake_training(tmp_path, steps=6, sleep=0.5, crash_at=3)
    before = {job for job, *_ in _squeue(slurm_env)}
    proc = _profile_run(slurm_env, snakemake_bin, tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-5000:]
    jobs = sorted((int(job), state) for job, _, state, _ in _squeue(slurm_env) if job not in before)
    assert [state for _, state in jobs] == ["FAILED", "COMPLETED"], jobs
    first, second = (job for job, _ in jobs)
    history = (work / "history").read_text().splitlines()
    assert history == [f"job {first} mem_mb=4000 from step 0", f"job {second} mem_mb=8000 from step 3"]
    assert (work / "final.pth").read_text().strip() == "6"


def test_a_requeued_training_job_resumes_from_its_work_dir(slurm_env, snakemake_bin, tmp_path):
    """SLURM requeues the running job (as after a preemption or a node failure); Snakemake keeps waiting, and
    the job starts again under the same id and goes on from its last checkpoint."""
    work = _fake_training(tmp_path, steps=12, sleep=1, crash_at=None)
    proc = _profile_run(slurm_env, snakemake_bin, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (work / "checkpoint").exists() or int((work / "checkpoint").read_text() or 0) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "the job did not get to step 3"
            time.sleep(0.2)
        job = (work / "history").read_text().split()[1]
        subprocess.run(["scontrol", "requeue", job], env=slurm_env, check=True)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-5000:]
    history = (work / "history").read_text().splitlines()
    assert len(history) == 2 and history[0] == f"job {job} mem_mb=4000 from step 0", history
    assert history[1].startswith(f"job {job} mem_mb=4000 from step ") and int(history[1].split()[-1]) >= 3, history
    assert (work / "final.pth").read_text().strip() == "12"
