"""Planning at full size: ``snakemake -n`` with the OV-COCO and OV-LVIS presets on a generated data tree.

The tree has the reference layout and the real image counts (COCO 2017 train 118,287 / val 5,000; LVIS v1
train 100,170 / val 19,809) in its annotation files, but no image files and no annotations: planning reads
paths and timestamps, not contents. Each preset is planned in a fresh working directory (so nothing under
``results/`` exists and every job is planned); the result records seconds and jobs per rule.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESETS = {"coco": "workflow/presets/ov_coco.yaml", "lvis": "workflow/presets/ov_lvis.yaml"}
COCO_IMAGES = {"train": 118_287, "val": 5_000}
LVIS_IMAGES = {"train": 100_170, "val": 19_809}
# the presets' files from elsewhere, at the reference's paths (relative to the working directory): CLIP weights,
# DetPro's prompts (ov_lvis), the RPN's ImageNet R50 and the detectors' SoCo checkpoint
PRETRAINED_FILES = (
    "pretrained/clip/ViT-B-32.pt",
    "pretrained/detpro/iou_neg5_ens.pth",
    "pretrained/torchvision/resnet50-0676ba61.pth",
    "pretrained/soco/soco_star_mask_rcnn_r50_fpn_400e.pth",
)
# `snakemake -n` prints a table "job  count" after "Job stats:"; rows are "<rule> <count>"
_STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":")))


def make_tree(root: Path, scale: float = 1.0) -> dict[str, int]:
    """Write the reference-style tree under ``root`` (image counts times ``scale``); return the counts."""
    counts = {}
    for split, n in COCO_IMAGES.items():
        n = max(1, round(n * scale))
        counts[f"coco_{split}"] = n
        images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in range(1, n + 1)]
        _write(
            root / f"coco/annotations/instances_{split}2017.json",
            {"info": {}, "licenses": [], "images": images, "annotations": [], "categories": []},
        )
        (root / f"coco/{split}2017").mkdir(parents=True, exist_ok=True)
    for split, n in LVIS_IMAGES.items():
        n = max(1, round(n * scale))
        counts[f"lvis_{split}"] = n
        images = [
            {
                "id": i,
                "coco_url": f"http://images.cocodataset.org/{split}2017/{i:012d}.jpg",
                "width": 640,
                "height": 480,
                "neg_category_ids": [],
                "not_exhaustive_category_ids": [],
            }
            for i in range(1, n + 1)
        ]
        _write(
            root / f"lvis_v1/annotations/lvis_v1_{split}.json",
            {"info": {}, "images": images, "annotations": [], "categories": []},
        )
    return counts


def snakemake_exe() -> str:
    """The snakemake next to this interpreter (the venv's), else the one on PATH."""
    exe = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    if exe is None:
        raise ValueError("snakemake is not installed")
    return exe


def touch_pretrained(workdir: Path) -> None:
    """Empty files at the presets' :data:`PRETRAINED_FILES` paths under ``workdir``: they are DAG inputs, checked
    at parse time; planning needs them to exist, never reads them."""
    for rel in PRETRAINED_FILES:
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / rel).touch()


def plan(preset: str, data_root: Path, workdir: Path, *extra: str, configfiles=()) -> dict:
    """``snakemake -n`` with ``preset`` (then ``configfiles``) on ``data_root`` in ``workdir``: wall seconds,
    planned jobs per rule, and snakemake's ``output`` (not kept by :func:`run`).

    Raises:
        ValueError: snakemake failed (its output's tail is in the message).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    touch_pretrained(workdir)
    cmd = [
        snakemake_exe(),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "-n",
        "--configfile",
        str(REPO / PRESETS[preset]),
        *map(str, configfiles),
        "--config",
        f"data_root={data_root}",
        *extra,
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # a local run's GPU limit would not change the plan
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env)
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ValueError(f"snakemake -n with {PRESETS[preset]} failed:\n{out[-3000:]}")
    jobs: Counter[str] = Counter()
    in_stats = False
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Job stats:"):
            in_stats, jobs = True, Counter()  # the last table is the plan's
            continue
        m = _STATS_ROW.match(line) if in_stats else None
        if m and m.group(1) != "total":
            jobs[m.group(1)] += int(m.group(2))
        elif in_stats and line.startswith("total"):
            in_stats = False
    return {
        "seconds": round(seconds, 2),
        "jobs": sum(jobs.values()),
        "jobs_per_rule": dict(sorted(jobs.items())),
        "output": out,
    }


def _preset_shards(preset: str) -> int | None:
    import yaml

    return (yaml.safe_load((REPO / PRESETS[preset]).read_text()).get("oake") or {}).get("shards")


def run(scale: float = 1.0) -> dict:
    """Plan both presets on a generated tree (``scale`` = image-count factor); seconds and jobs per preset."""
    with tempfile.TemporaryDirectory(prefix="oadp-dag-") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        counts = make_tree(tmp / "data", scale)
        result: dict = {"images": counts, "tree_seconds": round(time.perf_counter() - start, 2)}
        for preset in PRESETS:
            planned = plan(preset, tmp / "data", tmp / f"work-{preset}")
            del planned["output"]
            result[preset] = {"shards": _preset_shards(preset), **planned}
    result["limit_seconds"] = 5.0
    return result
