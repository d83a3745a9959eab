"""The cost plan of both presets at full size: ``snakemake --force plan`` with ``ov_coco.yaml`` and ``ov_lvis.yaml``
on a generated tree with the real image counts (:func:`benchmarks.dag.make_tree`: COCO 2017 118,287 / 5,000, LVIS
v1 100,170 / 19,809 images, all 640x480, no image files; one box on each of :data:`ANNOTATED` training images:
OV-COCO's images with base boxes, every LVIS image), with the throughputs of
``results/bench/stages.json`` (CPU) and ``results/gpu_check/bench/stages.json`` (a GPU, when the GPU check wrote it).

Result per preset: the plan's seconds, its bytes per OAKE kind and in total, and per stage the work, bytes and
device-seconds on each device (``null`` = unmeasured). The README's full-size table is made from it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import dag

DEVICES = ("cpu", "h100")
#: training images with boxes (what the RPN's epochs and an epoch schedule count): OV-COCO's 107,761 images with base
#: boxes; LVIS v1 train's images counted whole (an upper bound)
ANNOTATED = {"coco/annotations/instances_train2017.json": 107_761, "lvis_v1/annotations/lvis_v1_train.json": 100_170}


def _annotate(root: Path, scale: float) -> None:
    """One 100x100 box of category 1 on each of the first :data:`ANNOTATED` images of the training files."""
    for rel, count in ANNOTATED.items():
        data = json.loads((root / rel).read_text())
        ids = [im["id"] for im in data["images"][: max(1, round(count * scale))]]
        data["annotations"] = [
            {"id": k + 1, "image_id": i, "category_id": 1, "bbox": [10, 10, 100, 100], "area": 1e4, "iscrowd": 0}
            for k, i in enumerate(ids)
        ]
        (root / rel).write_text(json.dumps(data, separators=(",", ":")))


def _summary(plan: dict) -> dict:
    stages: dict[str, dict] = {}
    for s in plan["stages"]:
        key = s["stage"] + (
            f" {s['folder']}" if s.get("folder") else f" {s['experiment']}" if s.get("experiment") else ""
        )
        stages[key] = {"work": s["work"], "bytes": s["bytes"], "seconds": s["seconds"], "time_source": s["time_source"]}
    return {
        "splits": plan["splits"],
        "bytes_by_kind": plan["bytes_by_kind"],
        "bytes_total": plan["totals"]["bytes"],
        "stages": stages,
        "bench_files": plan["bench_files"],
    }


def run(scale: float = 1.0) -> dict:
    bench = [str(dag.REPO / "results/bench"), str(dag.REPO / "results/gpu_check/bench")]
    result: dict = {"scale": scale}
    with tempfile.TemporaryDirectory(prefix="oadp-full-size-") as tmp:
        tmp = Path(tmp)
        result["images"] = dag.make_tree(tmp / "data", scale)
        _annotate(tmp / "data", scale)
        for preset in dag.PRESETS:
            for device in DEVICES:
                workdir = tmp / preset / device
                workdir.mkdir(parents=True)
                dag.touch_pretrained(workdir)
                # the stage's own bench folders are relative to the working directory: name the project's
                bench_link = workdir / "results"
                bench_link.mkdir()
                for folder, target in (("bench", bench[0]), ("gpu_check", str(Path(bench[1]).parent))):
                    if Path(target).exists():
                        os.symlink(target, bench_link / folder)
                cmd = [dag.snakemake_exe(), "--snakefile", str(dag.REPO / "Snakefile"), "--directory", str(workdir)]
                cmd += ["--cores", "1", "--force", "plan", "--configfile", str(dag.REPO / dag.PRESETS[preset])]
                cmd += ["--config", f"data_root={tmp / 'data'}", f"plan={{device: {device}}}"]
                start = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
                if proc.returncode != 0:
                    raise RuntimeError(f"plan of {preset} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
                plan = json.loads((workdir / "results/plan/plan.json").read_text())
                entry = result.setdefault(preset, {"plan_seconds": {}, "devices": {}})
                entry["plan_seconds"][device] = round(time.perf_counter() - start, 1)
                entry["devices"][device] = _summary(plan)
    return result
