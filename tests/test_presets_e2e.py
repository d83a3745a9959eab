"""Both real-data presets end to end under ``dry_run: true`` (``make test-presets``; marker ``presets``).

A generated reference-style tree (:mod:`tests.reference_tree`: real JPEGs of real COCO sizes, the real COCO and
LVIS v1 categories) and the user-supplied files with seeded random weights in their real formats (torchvision
ResNet-50, SoCo's Mask R-CNN R50-FPN checkpoint, OpenAI's ViT-B-32 archive, DetPro's prompt tensor) go through
every stage of ``workflow/presets/ov_coco.yaml`` and ``ov_lvis.yaml`` to ``results/report/summary.md``. Only
sizes change on the command line (``dry_run``, ``oake.shards``); architectures, resolutions, heads, losses and
evaluators are the presets'. Each preset runs with ``--directory`` in a temporary folder; the LVIS run starts in
yet another folder with the data and the user files elsewhere, named by absolute paths in an extra configfile.

Two environment variables serve ``tools/gpu_check.sh``: ``OADP_PRESETS_KEEP=DIR`` copies each run's summary,
metrics, logs and benchmarks to ``DIR/<preset>/`` with its wall time in ``DIR/<preset>/time.json``;
``OADP_PRESETS_SNAKEMAKE`` adds snakemake arguments after ``--cores 2`` (e.g. ``--cores 8 --resources gpu=2``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests import reference_tree
from tests.conftest import check_final, check_metrics

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.presets]
SIZES = ["dry_run=true", "oake={shards: 2}"]  # the only changes to the presets
OV_COCO_KEYS = ("novel_ap50", "base_ap50", "all_ap50", "novel_ap", "base_ap", "all_ap")
OV_LVIS_KEYS = ("ap", "apr", "apc", "apf", "segm_ap", "segm_apr", "segm_apc", "segm_apf")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, coco_categories, lvis_categories) -> Path:
    root = tmp_path_factory.mktemp("reference") / "data"
    counts = reference_tree.make_tree(root, coco_categories, lvis_categories)
    assert counts["coco_train"] == counts["lvis_train"] == 16 and counts["coco_val"] == counts["lvis_val"] == 8
    return root


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> dict[str, Path]:
    return reference_tree.make_user_files(tmp_path_factory.mktemp("user_files"))


def run_preset(snakemake_bin: str, preset: str, workdir: Path, cwd: Path, *config: str, configfiles=()) -> float:
    """``snakemake --cores 2`` of ``preset`` (then ``configfiles``) with ``--config config`` in ``workdir``,
    started in ``cwd``; returns the wall seconds. Fails with the run's output tail."""
    cmd = [
        snakemake_bin,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *shlex.split(os.environ.get("OADP_PRESETS_SNAKEMAKE", "")),
        "--configfile",
        str(REPO / f"workflow/presets/{preset}.yaml"),
        *map(str, configfiles),
        "--config",
        *config,
        *SIZES,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    seconds = time.perf_counter() - start
    keep(preset, workdir, seconds)
    if proc.returncode != 0:
        logs = sorted((workdir / "results/logs").rglob("*.log")) if (workdir / "results/logs").exists() else []
        failed = [p for p in logs if "Traceback" in p.read_text(errors="replace")]
        tails = "".join(f"\n--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in failed[:2])
        pytest.fail(f"{preset} failed after {seconds:.0f} s:\n{proc.stderr[-4000:]}{tails}")
    return seconds


def keep(preset: str, workdir: Path, seconds: float) -> None:
    """With ``OADP_PRESETS_KEEP``: copy the run's summary, metrics, logs and benchmarks there, add its time."""
    dest_root = os.environ.get("OADP_PRESETS_KEEP")
    if not dest_root:
        return
    dest = Path(dest_root) / preset
    results = workdir / "results"
    for sub in ("report", "evaluate", "logs", "benchmarks"):
        if (results / sub).exists():
            shutil.copytree(results / sub, dest / sub, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.npz"))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "time.json").write_text(json.dumps({"seconds": round(seconds, 1), "cuda": torch.cuda.is_available()}))


def check_run(workdir: Path, experiment: str, keys: tuple[str, ...]) -> dict:
    """Every metric of ``keys`` a number in [0, 100] (the tree has boxes of every group of classes in val), marked
    dry_run; ``final.pth`` loads into the experiment's model."""
    metrics = json.loads((workdir / f"results/evaluate/{experiment}/metrics.json").read_text())
    check_metrics(metrics, keys, experiment)
    assert metrics.get("dry_run") is True, (experiment, metrics.get("dry_run"))
    check_final(workdir / f"results/train/{experiment}/final.pth", experiment)
    return metrics


def check_report(workdir: Path, experiments: list[str]) -> str:
    summary = (workdir / "results/report/summary.md").read_text()
    for experiment in experiments:
        assert f"| {experiment} |" in summary, summary[:2000]
    assert "DRY RUN" in summary, summary[:2000]
    for plot in ("pr_curves", "per_class_ap", "loss_curves", "transfer"):
        assert (workdir / f"results/report/{plot}.png").stat().st_size > 0
    return summary


def check_prompt(path: Path, num_names: int, clip_file: Path) -> None:
    prompt = torch.load(path, weights_only=True)
    assert prompt["embeddings"].shape == (num_names, 512), prompt["embeddings"].shape  # ViT-B-32's embedding
    assert Path(prompt["meta"]["clip_weights"]).name == clip_file.name


def test_ov_coco_preset_end_to_end(snakemake_bin, data_root, user_files, tmp_path):
    """OV-COCO: the user files in the working directory at the paths the preset names; both experiments."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    user_root = user_files["clip"].parents[2]
    (workdir / "pretrained").symlink_to(user_root / "pretrained", target_is_directory=True)
    seconds = run_preset(snakemake_bin, "ov_coco", workdir, REPO, f"data_root={data_root}")
    print(f"ov_coco under dry_run: {seconds:.0f} s")
    experiments = yaml.safe_load((REPO / "workflow/presets/ov_coco.yaml").read_text())["experiments"]
    assert experiments == ["vild_ov_coco", "oadp_ov_coco"]
    for experiment in experiments:
        check_run(workdir, experiment, OV_COCO_KEYS)
    check_report(workdir, experiments)
    check_prompt(workdir / "results/prompts/vild.pth", 1217, user_files["clip"])  # the reference's vild vocabulary
    check_prompt(workdir / "results/prompts/ml.pth", 65, user_files["clip"])
    for kind in ("globals", "blocks", "objects"):
        for folder in ("train2017", "val2017"):
            verify = json.loads((workdir / f"results/oake/coco/{kind}/{folder}/verify.json").read_text())
            assert len(verify["checked"]) == 2 and verify["bad"] == {}, (kind, folder, verify)
    recall = json.loads((workdir / "results/proposals/coco/recall.json").read_text())
    assert recall["novel"]["boxes"] > 0 and recall["base"]["boxes"] > 0
    assert not (workdir / "results/demo_data").exists() and not (workdir / "results/teacher").exists()


def test_ov_lvis_preset_from_another_folder(snakemake_bin, data_root, user_files, tmp_path):
    """OV-LVIS with its mask head and segm metrics; started outside the project and the working directory, the
    user files elsewhere (absolute paths in a configfile of the user's)."""
    workdir, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    workdir.mkdir()
    elsewhere.mkdir()
    locations = elsewhere / "locations.yaml"
    locations.write_text(
        yaml.safe_dump(
            {
                "clip": {"weights": str(user_files["clip"])},
                "prompts": {"detpro": str(user_files["detpro"])},
                "proposals": {"backbone_init": f"torchvision:{user_files['resnet50']}"},
                "train": {"load_from": str(user_files["soco"])},
            }
        )
    )
    seconds = run_preset(
        snakemake_bin, "ov_lvis", workdir, elsewhere, f"data_root={data_root}", configfiles=[locations]
    )
    print(f"ov_lvis under dry_run: {seconds:.0f} s")
    experiments = yaml.safe_load((REPO / "workflow/presets/ov_lvis.yaml").read_text())["experiments"]
    assert experiments == ["oadp_ov_lvis"]
    check_run(workdir, "oadp_ov_lvis", OV_LVIS_KEYS)  # segm_*: the mask head's masks were evaluated
    detections = json.loads((workdir / "results/evaluate/oadp_ov_lvis/detections.json").read_text())
    assert detections and all("segmentation" in d for d in detections)
    check_report(workdir, experiments)
    check_prompt(workdir / "results/prompts/vild.pth", 1203, user_files["clip"])
    detpro = torch.load(workdir / "results/prompts/detpro_lvis.pth", weights_only=True)
    assert detpro["embeddings"].shape == (1203, 512)
    assert not (elsewhere / "results").exists()  # every output went to the working directory
